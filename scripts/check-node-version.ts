// Fails fast when npm scripts do not run on the project's Node 24 (from the `node` devDependency).
const major = Number(process.versions.node.split('.')[0]);
process.stdout.write(`node --version: v${process.versions.node}\n`);
if (major < 24) {
  process.stderr.write('this project runs on Node.js 24: run `npm ci` so node_modules/.bin/node (the "node" package) is used\n');
  process.exit(1);
}
