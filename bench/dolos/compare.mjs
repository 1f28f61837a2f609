// Every pair of files in each folder given, by Dolos (tree-sitter tokens, winnowing), the ignored
// file's fingerprints left out: one JSON line per pair, then one with the seconds spent.
// node compare.mjs IGNORED_FILE KGRAM_LENGTH KGRAMS_IN_WINDOW FOLDER...
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { Dolos } from "@dodona/dolos-lib";

const [ignored, kgramLength, kgramsInWindow, ...folders] = process.argv.slice(2);
const start = performance.now();
for (const folder of folders) {
  const files = readdirSync(folder).sort().map((name) => join(folder, name));
  const dolos = new Dolos({
    language: "python",
    kgramLength: Number(kgramLength),
    kgramsInWindow: Number(kgramsInWindow),
  });
  const report = await dolos.analyzePaths(files, ignored);
  for (const pair of report.allPairs()) {
    console.log(JSON.stringify({
      folder, left: pair.leftFile.path, right: pair.rightFile.path, similarity: pair.similarity,
    }));
  }
}
console.log(JSON.stringify({ seconds: (performance.now() - start) / 1000 }));
