// Package bench runs end-to-end benchmarks in netlab (not built yet:
// issue 8): vsgate side by side with kernel nftables DNAT, HAProxy, nginx
// and Apache in one run, with a report and a chart.
//
// What it must not do: send traffic anywhere but the namespaces it creates,
// or run unbounded load loops.
package bench
