# ruff: noqa: E501, RUF001  (minified page text: long lines and en dashes are content)
"""The dashboard's two pages, self-contained (inline CSS and script, SVG charts, no external anything).

``PAGE`` polls ``/dashboard/data`` every second (same origin, the HttpOnly cookie or nothing: the API
answers 401 and the page shows the login link) and fills its elements with ``textContent`` only: paths
and reasons come from viewers and must never become markup. ``LOGIN`` posts the token to
``/dashboard/login``. ``{nonce}`` is replaced per response (the Content-Security-Policy allows only it).
"""

from __future__ import annotations

_STYLE = """
:root{--bg:#0f1419;--panel:#182029;--line:#26313d;--text:#dfe6ee;--dim:#8b98a6;--hit:#3fb950;--miss:#d29922;
--stale:#a371f7;--pass:#58a6ff;--error:#f85149;--other:#6e7681}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--text);
font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;align-items:baseline;padding:.8rem 1rem;
border-bottom:1px solid var(--line)}
header h1{font-size:1.1rem;margin:0}header span{color:var(--dim)}
main{display:grid;gap:.8rem;padding:.8rem;grid-template-columns:repeat(4,minmax(0,1fr))}
section{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:.7rem .8rem;min-width:0;
overflow-x:auto}
section h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.05em;color:var(--dim);margin:0 0 .4rem}
.wide{grid-column:span 2}.full{grid-column:1/-1}
.kpi{font-size:1.7rem;font-weight:600;font-variant-numeric:tabular-nums}.sub{color:var(--dim);font-size:.8rem}
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{padding:.2rem .3rem;text-align:right;border-bottom:1px solid var(--line);white-space:nowrap}
td:first-child,th:first-child{text-align:left;overflow:hidden;text-overflow:ellipsis;max-width:22rem}
th{color:var(--dim);font-weight:500}
.dot{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;margin-right:.35rem}
.up{background:var(--hit)}.down{background:var(--error)}.probing{background:var(--miss)}
svg{width:100%;height:140px;display:block}.bar{display:flex;height:14px;border-radius:4px;overflow:hidden;
background:var(--line)}.bar div{height:100%}
.legend span{margin-right:.8rem;color:var(--dim);font-size:.8rem}
#state{margin-left:auto}.stale-data{color:var(--error)}
@media (max-width:900px){main{grid-template-columns:repeat(2,minmax(0,1fr))}}
@media (max-width:560px){main{grid-template-columns:minmax(0,1fr)}.wide{grid-column:auto}
.kpi{font-size:1.4rem}td:first-child{max-width:11rem}td,th{white-space:normal;padding:.2rem}}
"""

PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgeproxy dashboard</title>
<style nonce="{nonce}">"""
    + _STYLE
    + """</style></head>
<body>
<header><h1>edgeproxy <span id="node">…</span></h1>
<span>workers <b id="workers">–</b></span><span>generation <b id="generation">–</b></span>
<span>up <b id="uptime">–</b></span><span id="state">connecting…</span></header>
<main>
<section><h2>Requests / s</h2><div class="kpi" id="rps">–</div>
<div class="sub">total <span id="total-requests">–</span></div></section>
<section><h2>Bandwidth</h2><div class="kpi" id="bps">–</div>
<div class="sub">sent <span id="total-bytes">–</span> · from origin <span id="origin-bytes">–</span></div></section>
<section><h2>Hit ratio</h2><div class="kpi" id="hit-ratio">–</div>
<div class="sub">by bytes <span id="byte-hit-ratio">–</span></div></section>
<section><h2>Origin latency</h2><div class="kpi" id="p50">–</div>
<div class="sub">p95 <span id="p95">–</span> · p99 <span id="p99">–</span></div></section>
<section class="wide"><h2>Requests / s by cache result</h2><svg id="chart" viewBox="0 0 300 140"
preserveAspectRatio="none" role="img" aria-label="requests per second by cache result"></svg>
<div class="legend" id="legend"></div></section>
<section class="wide"><h2>By cache result</h2><table><thead><tr><th>result</th><th>req/s</th><th>bytes/s</th>
<th>requests</th><th>bytes</th></tr></thead><tbody id="results"></tbody></table></section>
<section class="wide"><h2>Status codes</h2><div class="bar" id="status-bar"></div>
<table><tbody id="status"></tbody></table></section>
<section class="wide"><h2>Origins</h2><table><thead><tr><th>origin</th><th>state</th><th>last check</th>
<th>failures</th><th>down</th></tr></thead><tbody id="origins"></tbody></table>
<div class="sub">requests <span id="origin-requests">–</span> · errors <span id="origin-errors">–</span> ·
failovers <span id="failovers">–</span></div></section>
<section class="wide"><h2>Top URLs (5 min)</h2><table><thead><tr><th>path</th><th>requests</th><th>bytes</th>
</tr></thead><tbody id="top-urls"></tbody></table></section>
<section class="wide"><h2>Top misses (5 min)</h2><table><thead><tr><th>path</th><th>misses</th><th>bytes</th>
</tr></thead><tbody id="top-misses"></tbody></table></section>
<section class="wide"><h2>Storage tiers</h2><table><thead><tr><th>tier</th><th>entries</th><th>bytes</th>
<th>limit</th><th>evictions</th></tr></thead><tbody id="tiers"></tbody></table></section>
<section class="wide"><h2>Invalidations and purges</h2><table><thead><tr><th>what</th><th>kind</th><th>id</th>
<th>when</th></tr></thead><tbody id="events"></tbody></table></section>
</main>
<script nonce="{nonce}">
"use strict";
const COLORS={hit:"var(--hit)","refresh-hit":"var(--hit)",stale:"var(--stale)",miss:"var(--miss)",
bypass:"var(--pass)",error:"var(--error)",synth:"var(--other)",generated:"var(--other)"};
const SHOWN=["hit","miss","stale","bypass","error","refresh-hit","synth","generated"];
const LABEL={bypass:"pass"};
const history=[];const $=id=>document.getElementById(id);
function num(n){if(n===null||n===undefined)return"–";const a=Math.abs(n);
if(a>=1e9)return(n/1e9).toFixed(1)+"G";if(a>=1e6)return(n/1e6).toFixed(1)+"M";
if(a>=1e4)return(n/1e3).toFixed(1)+"k";return Number.isInteger(n)?String(n):n.toFixed(1)}
function bytes(n){if(n===null||n===undefined)return"–";const u=["B","KiB","MiB","GiB","TiB"];let i=0;
while(Math.abs(n)>=1024&&i<u.length-1){n/=1024;i++}return(i?n.toFixed(1):String(Math.round(n)))+" "+u[i]}
function pct(x){return x===null||x===undefined?"–":(x*100).toFixed(1)+"%"}
function ms(x){return x===null||x===undefined?"–":x.toFixed(x<10?2:0)+" ms"}
function ago(t,now){if(!t)return"never";const s=Math.max(0,now-t);
return s<60?s.toFixed(0)+" s ago":s<3600?(s/60).toFixed(0)+" min ago":(s/3600).toFixed(1)+" h ago"}
function dur(s){s=Math.max(0,s);return s<120?s.toFixed(0)+" s":s<7200?(s/60).toFixed(0)+" min":
(s/3600).toFixed(1)+" h"}
function text(id,v){$(id).textContent=v}
function rows(id,data,cells){const body=$(id);body.replaceChildren();for(const item of data){
const tr=document.createElement("tr");for(const c of cells(item)){const td=document.createElement("td");
if(c instanceof Node)td.append(c);else if(c&&c.t!==undefined){td.textContent=c.t;td.id=c.id}
else td.textContent=c;tr.append(td)}body.append(tr)}
if(!data.length){const tr=document.createElement("tr");const td=document.createElement("td");
td.textContent="none yet";td.colSpan=9;tr.append(td);body.append(tr)}}
function sum(o){return Object.values(o).reduce((a,b)=>a+b,0)}
function chart(){const svg=$("chart");const W=300,H=140;const max=Math.max(1,...history.map(h=>sum(h)));
const parts=[];for(const r of SHOWN){if(!history.some(h=>h[r]>0))continue;
const pts=history.map((h,i)=>((i/(Math.max(1,history.length-1)))*W).toFixed(1)+","+
(H-2-(h[r]/max)*(H-10)).toFixed(1)).join(" ");
parts.push('<polyline fill="none" stroke-width="2" vector-effect="non-scaling-stroke" stroke="'+
COLORS[r]+'" points="'+pts+'"/>')}
svg.innerHTML=parts.join("");const lg=$("legend");lg.replaceChildren();for(const r of SHOWN){
if(!history.some(h=>h[r]>0))continue;const s=document.createElement("span");const d=document.createElement("i");
d.className="dot";d.style.background=COLORS[r];s.append(d,LABEL[r]||r);lg.append(s)}}
function render(d){text("node",d.node);text("workers",d.workers);text("generation",d.generation);
text("uptime",dur(d.time-d.started));const rr=d.rates.requests,rb=d.rates.bytes;
text("rps",num(sum(rr)));text("bps",bytes(sum(rb))+"/s");text("total-requests",num(sum(d.requests)));
text("total-bytes",bytes(sum(d.bytes)));text("origin-bytes",bytes(d.origin.bytes));
text("hit-ratio",pct(d.hit_ratio.requests));text("byte-hit-ratio",pct(d.hit_ratio.bytes));
const l=d.origin.latency_ms;text("p50",ms(l.p50));text("p95",ms(l.p95));text("p99",ms(l.p99));
text("origin-requests",num(d.origin.requests));text("origin-errors",num(d.origin.errors));
text("failovers",num(d.origin.failovers));
rows("results",SHOWN.filter(r=>d.requests[r]||["hit","miss","stale","bypass","error"].includes(r)),
r=>{const tr=document.createElement("span");const dot=document.createElement("i");dot.className="dot";
dot.style.background=COLORS[r];tr.append(dot,LABEL[r]||r);
return[tr,{t:num(rr[r]),id:"rate-"+r},bytes(rb[r])+"/s",{t:String(d.requests[r]),id:"req-"+r},bytes(d.bytes[r])]});
const total=Math.max(1,sum(d.status));const bar=$("status-bar");bar.replaceChildren();
const sc={"1xx":"var(--other)","2xx":"var(--hit)","3xx":"var(--pass)","4xx":"var(--miss)","5xx":"var(--error)"};
for(const[c,n]of Object.entries(d.status)){if(!n)continue;const b=document.createElement("div");
b.style.width=(n/total*100)+"%";b.style.background=sc[c];b.title=c+": "+n;bar.append(b)}
rows("status",Object.entries(d.status),([c,n])=>[c,num(n),pct(n/total)]);
rows("origins",d.origins,o=>{const s=document.createElement("span");const dot=document.createElement("i");
dot.className="dot "+o.state;s.append(dot,o.name);return[s,o.state+(o.last_error&&o.state!=="up"?
" ("+o.last_error+")":""),ago(o.last_check,d.time),num(o.failures),num(o.times_down)]});
rows("top-urls",d.top_urls,u=>[u.path,num(u.requests),bytes(u.bytes)]);
rows("top-misses",d.top_misses,u=>[u.path,num(u.requests),bytes(u.bytes)]);
const t=d.tiers;const tiers=[["memory",t.memory],["disk",t.disk],["shared",t.shared]];
rows("tiers",tiers,([n,v])=>v===null?[n,"–","–","–","off"]:n==="shared"?
[n+(v.available?" (up)":" (DOWN)"),"–","–","–","hits "+num(v.hits||0)+" · errors "+num((v.errors||0)+(v.timeouts||0))]:
[n,num(v.entries),bytes(v.bytes),v.max_bytes?bytes(v.max_bytes):"–",num(v.evictions)]);
rows("events",d.events,e=>[e.what.join(", "),e.kind+(e.soft?" (soft)":""),e.id,ago(e.time,d.time)]);
history.push(rr);if(history.length>120)history.shift();chart();
const st=$("state");st.textContent="live · "+new Date(d.time*1000).toLocaleTimeString();st.className=""}
async function poll(){try{const r=await fetch("/dashboard/data",{credentials:"same-origin",cache:"no-store"});
if(r.status===401){location.href="/dashboard";return}if(!r.ok)throw new Error("HTTP "+r.status);
render(await r.json())}catch(e){const st=$("state");st.textContent="not updating: "+e.message;
st.className="stale-data"}setTimeout(poll,1000)}
poll();
</script></body></html>
"""
)

LOGIN = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgeproxy dashboard: sign in</title>
<style nonce="{nonce}">"""
    + _STYLE
    + """
form{max-width:22rem;margin:12vh auto;background:var(--panel);border:1px solid var(--line);border-radius:8px;
padding:1.2rem}label{display:block;color:var(--dim);margin-bottom:.3rem}
input{width:100%;padding:.5rem;background:var(--bg);color:var(--text);border:1px solid var(--line);
border-radius:4px;font:inherit}button{margin-top:.8rem;padding:.5rem 1rem;background:var(--pass);color:#000;
border:0;border-radius:4px;font:inherit;cursor:pointer}.err{color:var(--error)}</style></head>
<body><form id="login" method="post" action="/dashboard/login">
<h1>edgeproxy dashboard</h1><p class="err">{message}</p>
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></body></html>
"""
)
