/**
 * The console's whole stylesheet, inlined in every page: no external fonts, scripts or files. Exported
 * (as `consoleStylesheet` from `cotwebhook/hono`) so a host's own pages beside the console, such as its
 * sign-in page, can look the same.
 *
 * @example
 * ```ts
 * c.html(`<style>${consoleStylesheet}</style><header><strong>Sign in</strong></header><main>…</main>`)
 * ```
 */
export const CONSOLE_CSS = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2433;background:#f5f6f8}
header{background:#1d2433;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#cfd6e4;text-decoration:none}header a:hover{color:#fff}
header strong{font-size:16px;color:#fff}
main{max-width:1180px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:20px;margin:0 0 14px}h2{font-size:16px;margin:24px 0 10px}
a{color:#2155c4}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #dde1e8}
th,td{text-align:left;padding:7px 9px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:#5b6475;background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#fff;border:1px solid #dde1e8;padding:10px;overflow:auto;max-height:360px;white-space:pre-wrap;word-break:break-all}
.url{max-width:280px;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.ok{background:#dcf5e3;color:#14632d}.bad{background:#fde2e1;color:#8a1c13}.wait{background:#e8ebf0;color:#3d4656}.off{background:#eceef2;color:#5b6475}
.notice{background:#e6f0ff;border:1px solid #b8d0fb;padding:9px 12px;margin:0 0 14px}
.error-box{background:#fde2e1;border:1px solid #f3b4af;padding:9px 12px;margin:0 0 14px}
.secret{background:#fff8e1;border:1px solid #f0d68a;padding:9px 12px;margin:0 0 14px;overflow-wrap:anywhere}
form.inline{display:inline}
.bar{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin:0 0 14px}
.bar.actions{align-items:center}
.card{background:#fff;border:1px solid #dde1e8;padding:14px 16px;margin:0 0 14px}
.field{margin:0 0 12px}.field label{display:block;font-weight:600;margin:0 0 3px}
.field input[type=text],.field input[type=url],.field select,.field textarea{width:100%;max-width:560px;padding:6px 8px;border:1px solid #c4cad4;border-radius:3px;font:inherit}
.field .hint{color:#5b6475;font-size:12px}
.field .err{color:#a21d12;font-size:13px;margin:3px 0 0}
.field.invalid input,.field.invalid select{border-color:#d0392b}
.field input[readonly]{background:#eef0f4;color:#5b6475;border-style:dashed}
button,.button{display:inline-block;padding:5px 12px;border:1px solid #2155c4;background:#2155c4;color:#fff;border-radius:3px;font:inherit;cursor:pointer;text-decoration:none}
button.secondary,.button.secondary{background:#fff;color:#2155c4}
button.danger{background:#fff;color:#a21d12;border-color:#a21d12}
dl{display:grid;grid-template-columns:160px 1fr;gap:4px 12px;margin:0}dt{color:#5b6475}dd{margin:0;overflow-wrap:anywhere}
.pages{margin:10px 0;display:flex;gap:12px}
.muted{color:#5b6475}
svg text{font:11px system-ui,sans-serif;fill:#5b6475}
@media (max-width:700px){
header{flex-wrap:wrap;gap:6px 16px;padding:10px 12px}
main{padding:14px 12px 36px}
table{display:block;overflow-x:auto;max-width:100%}
td.url{min-width:200px}
dl{grid-template-columns:1fr}dt{margin-top:6px}
.field input[type=text],.field input[type=url],.field select,.field textarea{max-width:100%}
pre{max-width:100%}
svg{max-width:100%;height:auto}
}
`
