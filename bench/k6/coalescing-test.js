// The seed's coalescing test: many updates over a few hot keys (seed-001 … seed-010), then a look
// at /admin/queue. However many writes were accepted, the queue holds at most one entry per key.
//
//   k6 run -e ADMIN_TOKEN=$ADMIN_TOKEN bench/k6/coalescing-test.js
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e HOT_KEYS=10 -e ADMIN_TOKEN=$ADMIN_TOKEN bench/k6/coalescing-test.js
//
// /admin/queue needs the admin token that `make run` prints.
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const HOT_KEYS = parseInt(__ENV.HOT_KEYS || '10', 10);
const JSON_HEADERS = { 'Content-Type': 'application/json' };
const ADMIN_HEADERS = { Authorization: `Bearer ${__ENV.ADMIN_TOKEN || ''}` };

export const options = {
  scenarios: {
    hot_updates: { executor: 'constant-vus', vus: 20, duration: '30s' },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
  },
};

function hotKey(n) {
  const digits = String(n);
  return 'seed-' + '000'.slice(digits.length) + digits;
}

export default function () {
  const key = hotKey(1 + Math.floor(Math.random() * HOT_KEYS));
  const update = {
    name: `Coalesced ${__VU}-${__ITER}`,
    price: Math.round(Math.random() * 10000) / 100,
    quantity: __ITER % 1000,
  };
  const res = http.put(`${BASE_URL}/products/${key}`, JSON.stringify(update), { headers: JSON_HEADERS });
  check(res, { 'update answers 200': (r) => r.status === 200 });
}

export function teardown() {
  const queue = http.get(`${BASE_URL}/admin/queue`, { headers: ADMIN_HEADERS });
  check(queue, {
    '/admin/queue answers 200': (r) => r.status === 200,
    'at most one queued entry per hot key': (r) => r.json('queue_size') + r.json('in_flight') <= HOT_KEYS,
  });
  const metrics = http.get(`${BASE_URL}/metrics`).body || '';
  const coalesced = metrics.split('\n').find((l) => l.startsWith('wbc_writes_coalesced_total'));
  console.log(`queue: ${queue.body}`);
  console.log(`coalesced: ${coalesced || 'wbc_writes_coalesced_total not found'}`);
}
