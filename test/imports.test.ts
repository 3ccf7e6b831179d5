import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The project's own modules import one another without a cycle: main.ts, server.ts, core/,
 * api/, broker/, worker/, bench/, web/src/, test/ and any other folder of .ts files there is
 * (node_modules, dist and dot folders aside). Every import counts: static, `export … from`,
 * dynamic `import()`, and type-only ones too (a type-only cycle still ties two modules to each
 * other; such a step is marked "(types)"). Relative specifiers are resolved as TypeScript does
 * here: './x.js' is ./x.ts (or ./x.tsx), and web/src's './x' is ./x.ts or ./x.tsx.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SKIPPED_DIRS = new Set(['node_modules', 'dist']);
const SOURCE = /\.(ts|tsx|mts|cts)$/;

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.') || SKIPPED_DIRS.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sourceFiles(path, out);
    else if (SOURCE.test(name)) out.push(path);
  }
  return out;
}

interface Import {
  specifier: string;
  typeOnly: boolean;
}

/** Every module specifier `file` names, read from its syntax tree (so never from a comment). */
function importsOf(file: string, text = readFileSync(file, 'utf8')): Import[] {
  const kind = file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS;
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, kind);
  const found: Import[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const onlyTypes = !!clause && (clause.isTypeOnly
        || (!clause.name && !!named && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly)));
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: onlyTypes });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const named = node.exportClause;
      const onlyTypes = node.isTypeOnly || (!!named && ts.isNamedExports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly));
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: onlyTypes });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) found.push({ specifier: arg.text, typeOnly: false });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true });
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push({ specifier: node.moduleReference.expression.text, typeOnly: node.isTypeOnly });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const isFile = (path: string) => {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

/** The file a relative specifier names, or undefined when there is none. */
function resolveRelative(from: string, specifier: string): string | undefined {
  const target = resolve(dirname(from), specifier);
  const ext = extname(specifier);
  const stem = target.slice(0, target.length - ext.length);
  const candidates =
    ext === '.js' ? [`${stem}.ts`, `${stem}.tsx`, target]
    : ext === '.jsx' ? [`${stem}.tsx`, target]
    : ext === '.mjs' ? [`${stem}.mts`, target]
    : ext === '.cjs' ? [`${stem}.cts`, target]
    : ext === '' ? [`${target}.ts`, `${target}.tsx`, `${target}.d.ts`, join(target, 'index.ts'), join(target, 'index.tsx')]
    : [target];
  return candidates.find(isFile);
}

interface Edge {
  to: string;
  typeOnly: boolean;
}

/** The import graph of `files` (paths relative to ROOT), and the relative specifiers that name no file. */
function importGraph(files: string[]) {
  const graph = new Map<string, Edge[]>();
  const unresolved: string[] = [];
  for (const file of files) {
    const edges = new Map<string, Edge>();
    for (const { specifier, typeOnly } of importsOf(file)) {
      if (!specifier.startsWith('./') && !specifier.startsWith('../')) continue; // a package or node: module
      const target = resolveRelative(file, specifier);
      if (target === undefined) {
        unresolved.push(`${relative(ROOT, file)}: '${specifier}'`);
        continue;
      }
      if (!SOURCE.test(target)) continue; // JSON, CSS, .mjs: they import nothing of ours
      const to = relative(ROOT, target);
      const known = edges.get(to);
      edges.set(to, { to, typeOnly: typeOnly && (known?.typeOnly ?? true) });
    }
    graph.set(relative(ROOT, file), [...edges.values()]);
  }
  return { graph, unresolved };
}

/**
 * One cycle per strongly connected group of modules (Tarjan), as a path from the group's first
 * file (by name) back to it: the shortest through value imports if there is one, else the
 * shortest; a group of more than two files also names them all.
 */
function importCycles(graph: Map<string, Edge[]>): string[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  let counter = 0;
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const { to } of graph.get(v) ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(v, Math.min(low.get(v)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(v, Math.min(low.get(v)!, index.get(to)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      const selfLoop = (graph.get(v) ?? []).some((e) => e.to === v);
      if (group.length > 1 || selfLoop) groups.push(group.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);

  /** The shortest path from `start` back to it within `members`, through value imports only
   * unless `types`; undefined when there is none. */
  const cycleFrom = (start: string, members: Set<string>, types: boolean): string | undefined => {
    const via = new Map<string, { from: string; typeOnly: boolean }>();
    const queue = [start];
    while (queue.length > 0) {
      const v = queue.shift()!;
      for (const e of graph.get(v) ?? []) {
        if (!members.has(e.to) || (e.typeOnly && !types)) continue;
        if (e.to === start) {
          const step = (file: string, typeOnly: boolean) => `-> ${file}${typeOnly ? ' (types)' : ''}`;
          const steps = [step(start, e.typeOnly)];
          for (let at = v; at !== start; at = via.get(at)!.from) steps.unshift(step(at, via.get(at)!.typeOnly));
          return `${start} ${steps.join(' ')}`;
        }
        if (!via.has(e.to)) {
          via.set(e.to, { from: v, typeOnly: e.typeOnly });
          queue.push(e.to);
        }
      }
    }
    return undefined;
  };

  return groups
    .sort((a, b) => a[0]!.localeCompare(b[0]!))
    .map((group) => {
      const members = new Set(group);
      const path = cycleFrom(group[0]!, members, false) ?? cycleFrom(group[0]!, members, true)!;
      return group.length > 2 ? `${path}   [${group.length} files tied together: ${group.join(', ')}]` : path;
    });
}

describe('imports', () => {
  const files = sourceFiles(ROOT);
  const { graph, unresolved } = importGraph(files);

  it('reads the whole tree, and every relative import names a file of it', () => {
    const tops = [...new Set([...graph.keys()].map((f) => f.split('/')[0]))];
    for (const part of ['main.ts', 'server.ts', 'core', 'api', 'broker', 'worker', 'bench', 'web', 'test']) expect(tops, part).toContain(part);
    expect(graph.get('main.ts')?.length, 'main.ts imports something of ours').toBeGreaterThan(0);
    expect(graph.get('web/src/main.tsx')?.map((e) => e.to), "web/src's extensionless specifiers resolve").toContain('web/src/app.tsx');
    expect(unresolved).toEqual([]);
  });

  it('the tree has no import cycle', () => {
    expect(importCycles(graph)).toEqual([]);
  });

  it('the check finds and names a cycle, a type-only step, and a module importing itself', () => {
    const g = (edges: Record<string, (string | [string, 'types'])[]>) =>
      new Map(Object.entries(edges).map(([from, tos]) => [from, tos.map((t) => (typeof t === 'string' ? { to: t, typeOnly: false } : { to: t[0], typeOnly: true }))]));
    expect(importCycles(g({ 'a.ts': ['b.ts'], 'b.ts': ['c.ts'], 'c.ts': [] }))).toEqual([]);
    expect(importCycles(g({ 'd.ts': ['a.ts'], 'a.ts': ['b.ts'], 'b.ts': [['a.ts', 'types']] }))).toEqual(['a.ts -> b.ts -> a.ts (types)']);
    // Of two cycles, the one through value imports is named, though longer.
    expect(importCycles(g({ 'a.ts': ['b.ts', 'c.ts'], 'b.ts': [['a.ts', 'types']], 'c.ts': ['e.ts'], 'e.ts': ['a.ts'] }))).toEqual([
      'a.ts -> c.ts -> e.ts -> a.ts   [4 files tied together: a.ts, b.ts, c.ts, e.ts]',
    ]);
    expect(importCycles(g({ 'x.ts': ['y.ts', 'z.ts'], 'y.ts': ['x.ts'], 'z.ts': ['y.ts'], 's.ts': ['s.ts'] }))).toEqual([
      's.ts -> s.ts',
      'x.ts -> y.ts -> x.ts   [3 files tied together: x.ts, y.ts, z.ts]',
    ]);
    const specs = importsOf('m.ts', [
      "import { a } from './a.js';",
      "import type { B } from './b.js';",
      "import { type C, type D } from './c.js';",
      "import e, { type E } from './e.js';",
      "export * from './f.js';",
      "export type { G } from './g.js';",
      "const h = await import('./h.js');",
      "let i: import('./i.js').I;",
      "// import { j } from './j.js';",
      "const k = 'import { k } from \"./k.js\"';",
    ].join('\n'));
    expect(specs).toEqual([
      { specifier: './a.js', typeOnly: false },
      { specifier: './b.js', typeOnly: true },
      { specifier: './c.js', typeOnly: true },
      { specifier: './e.js', typeOnly: false },
      { specifier: './f.js', typeOnly: false },
      { specifier: './g.js', typeOnly: true },
      { specifier: './h.js', typeOnly: false },
      { specifier: './i.js', typeOnly: true },
    ]);
  });
});
