"""The tRPC v11 protocol: codec, envelopes, errors, routers and the per-connection session.

Nothing in this package imports Autobahn or Twisted's network APIs: transports adapt to
:class:`chaingraph_gw.trpc.session.TRPCSession` through the small :class:`Transport` protocol.
"""
