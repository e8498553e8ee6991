// Tokenizes files with VS Code's TextMate engine and editors/card.tmLanguage.json,
// line by line as the editor does, and prints JSON: for each file, for each line,
// its tokens as [text, scopes].  tests/test_highlight.py checks the result.
//   node editors/test/tokenize.mjs FILE...
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const oniguruma = require("vscode-oniguruma");
const textmate = require("vscode-textmate");

const grammarPath = new URL("../card.tmLanguage.json", import.meta.url);
await oniguruma.loadWASM(readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")).buffer);
const registry = new textmate.Registry({
  onigLib: Promise.resolve({
    createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
    createOnigString: (s) => new oniguruma.OnigString(s),
  }),
  loadGrammar: async () => textmate.parseRawGrammar(readFileSync(grammarPath, "utf8"), grammarPath.pathname),
});
const grammar = await registry.loadGrammar("source.card");

const out = {};
for (const file of process.argv.slice(2)) {
  let stack = textmate.INITIAL;
  out[file] = readFileSync(file, "utf8").split("\n").map((line) => {
    const r = grammar.tokenizeLine(line, stack, 1000);
    if (r.stoppedEarly) throw new Error(`${file}: tokenizing took over 1 s: ${line}`);
    stack = r.ruleStack;
    return r.tokens.map((t) => [line.slice(t.startIndex, t.endIndex), t.scopes]);
  });
}
process.stdout.write(JSON.stringify(out));
