// The README's "Maps in the browser" code blocks compile under `tsc --strict` against this SDK
// (its package exports, as an app imports them) and MapLibre GL JS's types.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const sdk = resolve(fileURLToPath(new URL("..", import.meta.url)));
const readme = readFileSync(join(sdk, "../../README.md"), "utf8");

test("every code block of the README's front-end section type-checks", () => {
  const start = readme.indexOf("## Maps in the browser");
  const end = readme.indexOf("\n## ", start + 1);
  assert.ok(start >= 0 && end > start, "the section exists");
  const blocks = [...readme.slice(start, end).matchAll(/```(\w+)\n([\s\S]*?)```/g)];
  assert.ok(blocks.length >= 4, `${blocks.length} code blocks`);
  const dir = join(sdk, "test/.readme");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  const files = blocks.map(([, lang, code], i) => {
    assert.equal(lang, "ts", `block ${i} is ${lang}: every block must be checked`);
    const f = join(dir, `block${i}.ts`);
    writeFileSync(f, code + "\nexport {};\n");
    return f;
  });
  try {
    execFileSync("npx", ["--no-install", "tsc", "--noEmit", "--strict", "--skipLibCheck", "--target", "ES2022",
      "--module", "nodenext", "--moduleResolution", "nodenext", "--lib", "ES2022,DOM", "--types", "node", ...files],
    { cwd: sdk, encoding: "utf8", stdio: "pipe" });
  } catch (err) {
    assert.fail(`tsc: ${err.stdout}${err.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
