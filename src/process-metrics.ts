// The process and Node.js metrics (prom-client's defaults) under their conventional names,
// process_* and nodejs_*, where Prometheus tooling and stock dashboards look for them.
//
// Two adjustments, both for `promtool check metrics` and for --workers:
// - prom-client's nodejs_active_handles_total, nodejs_active_requests_total and
//   nodejs_active_resources_total are gauges named like counters, which promtool's lint refuses.
//   They are left out: the sum of nodejs_active_handles (and _requests, _resources) over its `type`
//   label is the same number.
// - With --workers the primary merges every process's metrics into one series each (admin/server.ts,
//   prom-client's AggregatorRegistry; a process is not a label). prom-client sums by default, omits
//   process_start_time_seconds and averages the event-loop lag. Here the start time is the earliest
//   (the pod's processes started then), the fd limit the highest, and the event-loop lag the worst
//   process's, so one saturated worker among eight still shows; sizes and CPU stay summed.
import { collectDefaultMetrics } from 'prom-client'
import type { Registry } from 'prom-client'

type Aggregator = 'sum' | 'first' | 'min' | 'max' | 'average' | 'omit'

const LEFT_OUT = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

const MERGED_BY: Record<string, Aggregator> = {
  process_start_time_seconds: 'min',
  process_max_fds: 'max',
  nodejs_eventloop_lag_seconds: 'max',
  nodejs_eventloop_lag_min_seconds: 'min',
  nodejs_eventloop_lag_max_seconds: 'max',
  nodejs_eventloop_lag_mean_seconds: 'max',
  nodejs_eventloop_lag_stddev_seconds: 'max',
  nodejs_eventloop_lag_p50_seconds: 'max',
  nodejs_eventloop_lag_p90_seconds: 'max',
  nodejs_eventloop_lag_p99_seconds: 'max',
}

export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry })
  for (const name of LEFT_OUT) registry.removeSingleMetric(name)
  for (const [name, aggregator] of Object.entries(MERGED_BY)) {
    const metric = registry.getSingleMetric(name)
    // prom-client's metrics read `aggregator` when they are serialized for merging; its types do not list it.
    if (metric) Object.assign(metric, { aggregator })
  }
}
