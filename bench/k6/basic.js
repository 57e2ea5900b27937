// The seed's basic load test: a ramp of virtual users, each creating a product and reading it back.
//
//   k6 run bench/k6/basic.js                                  # against `make run` on :8000
//   k6 run -e BASE_URL=http://127.0.0.1:8000 bench/k6/basic.js
//
// Watch the Grafana dashboard meanwhile: queue size, API latency, cache hit rate, worker write rate.
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const JSON_HEADERS = { 'Content-Type': 'application/json' };

export const options = {
  stages: [
    { duration: '30s', target: 10 }, // ramp up
    { duration: '1m', target: 50 }, // sustained load
    { duration: '30s', target: 0 }, // ramp down
  ],
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  },
};

export default function () {
  const product = {
    name: `k6 product ${__VU}-${__ITER}`,
    price: Math.round(Math.random() * 100000) / 100,
    quantity: Math.floor(Math.random() * 1000),
  };
  const created = http.post(`${BASE_URL}/products`, JSON.stringify(product), {
    headers: JSON_HEADERS,
    tags: { op: 'create' },
  });
  const ok = check(created, {
    'create answers 201': (r) => r.status === 201,
    'create is acknowledged from the cache': (r) => r.status !== 201 || r.json('source') === 'cache',
  });
  if (ok && created.status === 201) {
    const read = http.get(`${BASE_URL}/products/${created.json('id')}`, { tags: { op: 'read' } });
    check(read, {
      'read answers 200': (r) => r.status === 200,
      'read returns what was written': (r) => r.status === 200 && r.json('name') === product.name,
    });
  }
  sleep(0.1);
}
