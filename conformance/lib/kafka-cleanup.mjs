// Delete the Kafka topics a test created (prefix + "chaingraph.*"), so runs do not pile up partitions.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { REPO } from './gateway.mjs';

const SCRIPT = `
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
prefix = sys.argv[2]
topics = [t for t in admin.list_topics(timeout=5).topics if t.startswith(prefix)]
if topics:
    for f in admin.delete_topics(topics, operation_timeout=10).values():
        try:
            f.result()
        except Exception as exc:
            print("could not delete a topic:", exc, file=sys.stderr)
`;

export function deleteTopics(brokers, prefix) {
  if (!brokers || !prefix) return;
  spawnSync(path.join(REPO, '.venv', 'bin', 'python'), ['-c', SCRIPT, brokers, prefix], {
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 20_000,
  });
}
