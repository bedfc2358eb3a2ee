// Official MJML: reads MJML on stdin, writes the HTML to stdout; any validation error fails (exit 1).
const mjml = require("mjml");

let source = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { source += chunk; });
process.stdin.on("end", async () => {
  const result = await mjml(source, { validationLevel: "strict" });
  process.stdout.write(result.html);
});
