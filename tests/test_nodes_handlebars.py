"""The Handlebars renderer behind HandlebarsTemplateNode."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from chaingraph_gw.nodes.library.handlebars import HandlebarsError, render


def r(src: str, ctx: Any = None, logs: list | None = None) -> str:
    return render(src, {} if ctx is None else ctx, log=(lambda lvl, args: logs.append((lvl, args))) if logs is not None
                  else None)


class HandlebarsRenderTests(SynchronousTestCase):
    def test_variables_and_paths(self) -> None:
        ctx = {"a": {"b": {"c": "deep"}}, "list": [5, 6], "s": "héllo", "odd key": "ok", "n": 3.0, "f": 0.1,
               "t": True, "z": False, "nil": None, "o": {"x": 1}}
        self.assertEqual(r("{{a.b.c}} {{a/b/c}} {{this.a.b.c}} {{./a.b.c}}", ctx), "deep deep deep deep")
        self.assertEqual(r("{{list.length}} {{list.[1]}} {{list.0.x}} {{s.length}} {{[odd key]}}", ctx), "2 6  5 ok")
        self.assertEqual(r("{{n}} {{f}} {{t}} {{z}} [{{nil}}] [{{missing.deep}}] {{list}} {{o}}", ctx),
                         "3 0.1 true false [] [] 5,6 [object Object]")
        self.assertEqual(r("{{@root.a.b.c}}", ctx), "deep")

    def test_no_escaping(self) -> None:
        self.assertEqual(r("{{h}} {{{h}}} {{&h}}", {"h": "<a href='x'>&</a>"}),
                         "<a href='x'>&</a> <a href='x'>&</a> <a href='x'>&</a>")

    def test_if_else_unless(self) -> None:
        self.assertEqual(r("{{#if a}}Y{{else}}N{{/if}}", {"a": 0}), "N")
        self.assertEqual(r("{{#if a includeZero=true}}Y{{else}}N{{/if}}", {"a": 0}), "Y")
        self.assertEqual(r("{{#if a}}Y{{else}}N{{/if}}", {"a": []}), "N")
        self.assertEqual(r("{{#if a}}Y{{else}}N{{/if}}", {"a": {}}), "Y")
        self.assertEqual(r("{{#unless a}}U{{/unless}}", {"a": ""}), "U")
        self.assertEqual(r("{{#if a}}A{{else if b}}B{{else}}C{{/if}}", {"b": 1}), "B")
        self.assertEqual(r("{{#if a}}A{{^}}C{{/if}}", {}), "C")

    def test_each(self) -> None:
        self.assertEqual(r("{{#each xs}}{{@index}}:{{this}}{{#if @first}}F{{/if}}{{#if @last}}L{{/if}} {{/each}}",
                           {"xs": ["a", "b", "c"]}), "0:aF 1:b 2:cL ")
        self.assertEqual(r("{{#each o}}{{@key}}={{.}};{{/each}}", {"o": {"x": 1, "y": 2}}), "x=1;y=2;")
        self.assertEqual(r("{{#each xs}}x{{else}}empty{{/each}}", {"xs": []}), "empty")
        self.assertEqual(r("{{#each xs as |item i|}}{{i}}={{item.v}},{{/each}}", {"xs": [{"v": 1}, {"v": 2}]}),
                         "0=1,1=2,")
        self.assertEqual(r("{{#each xs}}{{../title}}-{{name}} {{/each}}", {"title": "T", "xs": [{"name": "a"}]}),
                         "T-a ")

    def test_with_and_implicit_blocks(self) -> None:
        self.assertEqual(r("{{#with u}}{{name}}/{{../top}}{{/with}}", {"u": {"name": "N"}, "top": "T"}), "N/T")
        self.assertEqual(r("{{#with u}}x{{else}}none{{/with}}", {}), "none")
        self.assertEqual(r("{{#xs}}[{{.}}]{{/xs}}{{^ys}}no-ys{{/ys}}{{#o}}{{k}}{{/o}}",
                           {"xs": [1, 2], "o": {"k": "K"}}), "[1][2]no-ysK")
        self.assertEqual(r("{{#n}}[{{.}}]{{/n}}", {"n": 0}), "[0]")  # Handlebars renders a 0 context

    def test_helpers(self) -> None:
        self.assertEqual(r("{{json o}}", {"o": {"a": 1}}), '{\n  "a": 1\n}')
        self.assertEqual(r("{{yaml o}}{{yml o}}", {"o": {"a": [1]}}), "a:\n  - 1\na:\n  - 1\n")
        self.assertEqual(r("{{uppercase s}} {{lowercase s}} [{{uppercase 0}}]", {"s": "aB"}), "AB ab []")
        self.assertEqual(r("{{uppercase (lowercase 'ABC')}}"), "ABC")
        self.assertEqual(r("{{lookup m k}}", {"m": {"x": "X"}, "k": "x"}), "X")
        logs: list = []
        self.assertEqual(r("{{log 'a' 1 true level='error'}}{{log}}", {}, logs), "")
        self.assertEqual(logs, [("error", ["a", 1, True]), ("info", [])])

    def test_js_quirks(self) -> None:
        # noEscape appends raw values: leading numbers/booleans add up like JS `+` until a string appears
        ctx = {"n": 1, "m": 2, "t": True, "s": "S", "nul": None, "xs": [1, 2]}
        self.assertEqual(r("{{n}}{{m}}", ctx), "3")
        self.assertEqual(r("{{t}}{{t}}", ctx), "2")
        self.assertEqual(r("x{{n}}{{m}}", ctx), "x12")
        self.assertEqual(r("{{n}}{{s}}{{m}}", ctx), "1S2")
        self.assertEqual(r("{{n}}{{nul}}{{m}}", ctx), "12")
        self.assertEqual(r("{{xs}}{{n}}", ctx), "1,21")
        self.assertEqual(r("{{#each xs as |v|}}{{#each ../xs as |w|}}{{v}}{{w}} {{/each}}{{/each}}", ctx), "2 3 3 4 ")
        # depths are only pushed when `context != depths[0]` (loose equality: 3 == [3])
        self.assertEqual(r("{{#each xs}}{{#each this}}{{../../t}}{{this}}{{/each}}|{{/each}}",
                           {"t": "T", "xs": [[1, 2], [3]]}), "T1T2|3|")
        self.assertEqual(r("{{#each xs}}{{@index}}{{#each ../xs}}{{@../index}}{{/each}}{{/each}}", ctx), "000111")
        # one-argument helpers called without one receive the options object
        self.assertEqual(r("{{uppercase}}", ctx), "[OBJECT OBJECT]")
        self.assertEqual(r("{{json}}", {"a": 1}), '{\n  "name": "json",\n  "hash": {},\n  "data": {\n    "root": {\n'
                         '      "a": 1\n    }\n  },\n  "loc": {\n    "start": {\n      "line": 1,\n      "column": 0\n'
                         '    },\n    "end": {\n      "line": 1,\n      "column": 8\n    }\n  }\n}')
        self.assertEqual(r("{{{{raw}}}} {{x}} {{{{/raw}}}}|", {"x": 1}), "|")  # no 'raw' helper: its value is empty

    def test_comments_escapes_and_whitespace_control(self) -> None:
        self.assertEqual(r("a{{! note }}b{{!-- has }} inside --}}c"), "abc")
        self.assertEqual(r("\\{{x}} {{y}}", {"y": 1}), "{{x}} 1")
        self.assertEqual(r("\\\\{{y}}", {"y": 1}), "\\1")
        self.assertEqual(r("a  {{~y~}}  b", {"y": 1}), "a1b")

    def test_standalone_lines(self) -> None:
        tpl = "List:\n  {{#each xs}}\n  - {{this}}\n  {{/each}}\nEnd\n{{! comment }}\n"
        self.assertEqual(r(tpl, {"xs": [1, 2]}), "List:\n  - 1\n  - 2\nEnd\n")
        self.assertEqual(r("{{#if a}}\nyes\n{{else}}\nno\n{{/if}}\n", {"a": True}), "yes\n")
        self.assertEqual(r("x {{#if a}}y{{/if}} z\n", {"a": True}), "x y z\n")

    def test_errors(self) -> None:
        def err(src: str, ctx: Any = None) -> str:
            return str(self.assertRaises(HandlebarsError, r, src, ctx))

        self.assertEqual(err("{{#if a}}x"),
                         "Parse error on line 1:\n{{#if a}}x\n----------^\n"
                         "Expecting 'OPEN_INVERSE_CHAIN', 'INVERSE', 'OPEN_ENDBLOCK', got 'EOF'")
        self.assertTrue(err("a\nb\n{{/if}}").startswith("Parse error on line 3:"))
        self.assertTrue(err("{{foo bar=}}").startswith("Parse error on line 1:"))
        self.assertEqual(err("x\n  {{#if a}}{{/each}}"), "if doesn't match each - 2:5")
        self.assertEqual(err("{{foo}"), "Parse error on line 1:\n{{foo}\n-----^\nExpecting 'CLOSE_RAW_BLOCK', 'CLOSE', "
                         "'CLOSE_UNESCAPED', 'OPEN_SEXPR', 'CLOSE_SEXPR', 'ID', 'OPEN_BLOCK_PARAMS', 'STRING', 'NUMBER', "
                         "'BOOLEAN', 'UNDEFINED', 'NULL', 'DATA', 'SEP', got 'INVALID'")
        self.assertEqual(err("{{a}}}"), "Parse error on line 1:\n{{a}}}\n---^\nExpecting 'CLOSE', 'OPEN_SEXPR', 'ID', "
                         "'STRING', 'NUMBER', 'BOOLEAN', 'UNDEFINED', 'NULL', 'DATA', got 'CLOSE_UNESCAPED'")
        self.assertEqual(err("{{#if a}}{{/if a}}"),
                         "Parse error on line 1:\n{{#if a}}{{/if a}}\n---------------^\nExpecting 'CLOSE', got 'ID'")
        self.assertEqual(err("{{else}}"), "Parse error on line 1:\n{{else}}\n^\nExpecting 'EOF', 'COMMENT', 'CONTENT', "
                         "'OPEN_RAW_BLOCK', 'OPEN_BLOCK', 'OPEN_INVERSE', 'OPEN', 'OPEN_UNESCAPED', 'OPEN_PARTIAL', "
                         "'OPEN_PARTIAL_BLOCK', got 'INVERSE'")
        e = self.assertRaises(HandlebarsError, r, "{{f 'x'}}", {"f": "not a function"})
        self.assertEqual(e.js_name, "TypeError")
        self.assertEqual(err("{{nope 1}}"), 'Missing helper: "nope"')
        self.assertEqual(err("{{#each}}{{/each}}"), "Must pass iterator to #each")
        self.assertEqual(err("{{#if}}{{/if}}"), "#if requires exactly one argument")
        self.assertEqual(err("{{#with}}{{/with}}"), "#with requires exactly one argument")
        self.assertEqual(err("{{> partial}}"), "The partial partial could not be found")
