// Build a JavaScript plugin into a WebAssembly component with componentize-js's JS API (the
// `jco componentize` CLI cannot read this repository's WIT), reproducibly: identical sources,
// WIT and tools give a byte-identical component.
//
//   node examples/plugins/build-js.mjs <source.js> <wit dir> <world> <out.wasm> [--with-http]
//
// By default the component is built without componentize-js's `http` and `fetch-event`
// features, so it does not import wasi:http at all; `--with-http` keeps them (only the
// escape-js test fixture needs that, to prove the host refuses outgoing requests).
//
// The source module must be self-contained (one file, no relative imports). Needs the
// node_modules installed by `npm ci` in this directory and, on first use, a C compiler (cc) to
// build tools/reproducible.c into <repo>/target/tools/reproducible.so. Linux x86_64 only.
//
// What makes the output reproducible. componentize-js runs the JS engine under Wizer and
// snapshots its memory, so whatever the engine saw ends up in the component:
//   - componentize-js hands the engine absolute paths (of the source, of the directory it
//     strips from error locations, and of a generated initializer in a work directory named from
//     Math.random()), and Wizer gives it a preopen named after the work directory; all of these
//     are stored in the snapshot. So the source is copied into a fresh staging directory that is
//     made the working directory, process.cwd() (which path.resolve uses) reports it as
//     `/proc/self/cwd` (a path that also means the staging directory to Wizer, which inherits
//     the working directory), os.tmpdir() reports `/proc/self/cwd/work`, and Math.random() is
//     fixed, all only for the duration of the call. The stored paths are then always
//     `/proc/self/cwd/<source name>` and `/proc/self/cwd/work/<fixed>/sources/initializer.js`;
//   - Wizer gives the engine real entropy, clocks and file metadata, so it runs under
//     LD_PRELOAD=reproducible.so (see tools/reproducible.c), passed through componentize()'s
//     `env` option. Wizer also passes its environment on to the engine, so LD_PRELOAD and
//     REPRO_ROOT name the staging directory as /proc/self/cwd there too.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syncBuiltinESMExports } from 'node:module';

const args = process.argv.slice(2);
const withHttp = args.includes('--with-http');
const positional = args.filter((a) => !a.startsWith('--'));
if (positional.length !== 4 || args.length - positional.length !== (withHttp ? 1 : 0)) {
  console.error('usage: node build-js.mjs <source.js> <wit dir> <world> <out.wasm> [--with-http]');
  process.exit(2);
}
const [source, wit, out] = [positional[0], positional[1], positional[3]].map((p) => resolve(p));
const world = positional[2];

const here = dirname(fileURLToPath(import.meta.url));
const shim = await buildShim(resolve(here, '../../target/tools/reproducible.so'));

const stage = await mkdtemp(join(process.env.TMPDIR || '/tmp', 'plugwatch-js-build.'));
const origCwd = process.cwd();
const origProcessCwd = process.cwd;
const origTmpdir = os.tmpdir;
const origRandom = Math.random;
try {
  const name = basename(source);
  await copyFile(source, join(stage, name));
  // Wizer passes its environment on to the engine (it is in the snapshot too), so the shim is
  // named by a path that is the same in every build.
  await copyFile(shim, join(stage, 'reproducible.so'));
  await mkdir(join(stage, 'work'));
  process.chdir(stage);
  process.cwd = () => '/proc/self/cwd';
  os.tmpdir = () => '/proc/self/cwd/work';
  // make componentize-js's `import { tmpdir } from 'node:os'` and `{ cwd } from 'node:process'` see them
  syncBuiltinESMExports();
  Math.random = () => 0.5;

  const { componentize } = await import('@bytecodealliance/componentize-js');
  const { component } = await componentize({
    sourcePath: name,
    witPath: wit,
    worldName: world,
    disableFeatures: withHttp ? [] : ['http', 'fetch-event'],
    env: { LD_PRELOAD: '/proc/self/cwd/reproducible.so', REPRO_ROOT: '/proc/self/cwd' },
  });

  process.cwd = origProcessCwd;
  process.chdir(origCwd);
  await writeFile(`${out}.tmp`, component);
  await rename(`${out}.tmp`, out);
} finally {
  Math.random = origRandom;
  process.cwd = origProcessCwd;
  os.tmpdir = origTmpdir;
  syncBuiltinESMExports();
  process.chdir(origCwd);
  await rm(stage, { recursive: true, force: true });
}

// Compile tools/reproducible.c unless an up-to-date build exists; return its path.
async function buildShim(so) {
  const src = join(here, 'tools/reproducible.c');
  const fresh = await Promise.all([stat(src), stat(so).catch(() => null)]).then(
    ([s, o]) => o && o.mtimeMs >= s.mtimeMs,
  );
  if (!fresh) {
    await mkdir(dirname(so), { recursive: true });
    const tmp = `${so}.tmp.${process.pid}`;
    const cc = process.env.CC || 'cc';
    const r = spawnSync(cc, ['-O2', '-shared', '-fPIC', '-o', tmp, src, '-ldl'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`${cc} failed to build ${src}`);
    await rename(tmp, so);
  }
  return so;
}
