package simreport

// pageTemplate is the report page. Its Content-Security-Policy forbids
// scripts and every fetch, so a page that tried one would show it as a
// console error (the rendering test looks for them).
const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 24px auto; max-width: 1000px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
p.meta { color: #555; margin-top: 0; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #f4f4f4; padding: 2px 4px; border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { font-weight: 600; color: #444; border-bottom: 1px solid #bbb; white-space: normal; vertical-align: bottom; }
td.model { white-space: normal; text-align: left; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
svg.chart { width: 100%; height: auto; display: block; margin: 4px 0 12px; }
svg .grid { stroke: #eee; }
svg .frame { fill: none; stroke: #999; }
svg .tick, svg .legend text { font-size: 11px; fill: #555; }
svg .label { font-size: 12px; fill: #333; }
svg .line { fill: none; stroke-width: 1.6; }
svg .dashed { stroke-dasharray: 4 3; }
svg .area { stroke: none; opacity: 0.85; }
svg .event line { stroke: #c00; stroke-dasharray: 3 3; }
svg .event text { font-size: 10px; fill: #c00; }
ol.marks li { margin: 2px 0; }
details { margin: 8px 0 16px; }
.note { color: #666; font-size: 12px; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .First.Measured}}<p class="meta">{{.First.Requests}} real calls, {{.Mode}}.</p>
{{if .Command}}<p class="meta">Made with <code>{{.Command}}</code>.</p>{{end}}
{{else}}<p class="meta">{{.First.Requests}} requests, {{.Mode}}, seed {{.First.Seed}}{{if .Compare}}: every strategy saw the same arrivals and the same random draws per request{{end}}.</p>
{{if .Command}}<p class="meta">Made with <code>{{.Command}}</code>; the same command gives the same figures.</p>{{end}}
{{end}}

{{if .Compare}}
<h2>Strategies side by side</h2>
<table id="comparison">
<tr><th>strategy</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>failed</th><th>retries</th><th>busiest</th><th>quietest</th><th>p99 vs first</th><th>p99.9 vs first</th>{{if .Cached}}<th>cache hits</th>{{end}}</tr>
{{range .Runs}}<tr><td><span class="swatch" style="background:{{.Colour}}"></span>{{.Name}}</td><td>{{ms .R.Latency.P50}}</td><td>{{ms .R.Latency.P90}}</td><td>{{ms .R.Latency.P99}}</td><td>{{ms .R.Latency.P999}}</td><td>{{.R.Failed}} ({{.FailedPct}})</td><td>{{.R.Retries}}</td><td>{{.Busiest}}</td><td>{{.Quietest}}</td><td>{{.P99Ratio}}</td><td>{{.P999Ratio}}</td>{{if $.Cached}}<td>{{.CacheHits}}</td>{{end}}</tr>
{{end}}</table>
<p class="note">Latency is end to end, of requests that succeeded, retries included. Busiest and quietest are the largest and smallest server shares of attempts.</p>
<h3>p99 latency over time</h3>
{{.TailChart}}
<h3>Latency distribution</h3>
{{.CDFChart}}
{{end}}

{{if .Marks}}
<h2>What happened</h2>
<p class="note">Numbered on the time axes of the charts.</p>
<ol class="marks">{{range .Marks}}<li>{{at .At}}: {{.Text}}</li>{{end}}</ol>
{{end}}

{{range .Runs}}
<h2>Strategy {{.Name}}</h2>
<p class="meta">{{.R.Succeeded}} succeeded, {{.R.Failed}} failed ({{.FailedPct}}), {{.R.Retries}} retries ({{.R.Recovered}} requests recovered by them){{if .R.Dropped}}, {{.R.Dropped}} attempts refused by full queues{{end}}; p50 {{ms .R.Latency.P50}}, p99 {{ms .R.Latency.P99}}, p99.9 {{ms .R.Latency.P999}} over {{ms .R.SimulatedTime}} of {{$.Clock}}.</p>
<table class="servers">
<tr><th>server</th><th style="text-align:left">latency model</th><th>attempts</th><th>share</th><th>expected</th><th>errors</th><th>attempt p50</th><th>attempt p99</th><th>peak in flight</th><th>health at end</th></tr>
{{range .R.Servers}}<tr><td>{{.ID}}{{with .Zone}} ({{.}}){{end}}</td><td class="model">{{.Latency}}</td><td>{{.Requests}}</td><td>{{pct .Share}}</td><td>{{if .ExpectedShare}}{{pct .ExpectedShare}}{{else}}-{{end}}</td><td>{{.Errors}}</td><td>{{ms .AttemptTime.P50}}</td><td>{{ms .AttemptTime.P99}}</td><td>{{.PeakInFlight}}</td><td>{{.FinalHealth}}</td></tr>
{{end}}</table>
<h3>Attempts per server over time</h3>
{{.LoadChart}}
<h3>Latency percentiles over time</h3>
{{.LatencyChart}}
{{if .Events}}<details><summary>Events of this run ({{len .R.Events}})</summary>
<table class="events"><tr><th>time</th><th>server</th><th>source</th><th>what</th></tr>
{{range .Events}}<tr><td>{{at .At}}</td><td>{{.Server}}</td><td>{{.Source}}</td><td style="text-align:left">{{.What}}</td></tr>
{{end}}</table>{{if .MoreEvents}}<p class="note">and {{.MoreEvents}} more, in --output json.</p>{{end}}</details>{{end}}
{{end}}

{{if not .Compare}}
<h2>Latency distribution</h2>
{{.CDFChart}}
{{end}}
{{if .First.Measured}}<p class="note">Made by pvlb load: real calls through the production balancer to real servers, on the wall clock.</p>
{{else}}<p class="note">Made by pvlb simulate: the production balancer under simulated traffic, on a simulated clock.</p>{{end}}
</body>
</html>
`
