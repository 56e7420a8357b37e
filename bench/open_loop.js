// k6 open-loop script for bench_scoring.py: constant arrival rate, the summary written as JSON.
// Env: URL, RATE (req/s), DURATION (s), VUS (pre-allocated VUs, i.e. the most requests in flight before k6
// has to create more, dropping iterations meanwhile), SUMMARY (output path).
// constant-arrival-rate never delays an iteration: with no free VU it drops it (dropped_iterations), so with
// zero drops every request starts at its scheduled time and the server's stalls cannot delay later sends
// (no coordinated omission), give or take the generator's own jitter, measured here as start_lag_ms (Date.now()
// has 1 ms resolution, and the figure is meaningless once iterations were dropped: a check, not a latency).
// Response bodies are discarded to keep k6's CPU per request low; bench_scoring.py checks the answer itself.
import http from 'k6/http';
import exec from 'k6/execution';
import { Trend, Counter } from 'k6/metrics';

const URL = __ENV.URL;
const RATE = Number(__ENV.RATE);
const BODY = '{"data": [21]}';
const PARAMS = { headers: { 'Content-Type': 'application/json' } };
const startLag = new Trend('start_lag_ms');
const bad = new Counter('bad_responses');

export const options = {
  scenarios: {
    open: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: `${__ENV.DURATION}s`,
      preAllocatedVUs: Number(__ENV.VUS || 64), maxVUs: 4 * Number(__ENV.VUS || 64), gracefulStop: '2s',
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max', 'count'],
  discardResponseBodies: true,
};

export default function () {
  const scheduled = exec.scenario.startTime + (exec.scenario.iterationInTest * 1000) / RATE;
  startLag.add(Date.now() - scheduled);
  const r = http.post(URL, BODY, PARAMS);
  if (r.status !== 200) {
    bad.add(1);
  }
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
