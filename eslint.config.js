// ESLint (flat config): typescript-eslint's recommended rules over the TypeScript sources, the JavaScript the
// project ships (the engine worker's bootstrap, the playground page's modules, this file), with formatting left to
// Prettier (eslint-config-prettier turns off the rules that would fight it). `npm run lint`.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';
import { defineConfig } from 'eslint/config';

export default defineConfig(
  {
    ignores: ['dist/', 'node_modules/', '.cache/', '.tap/', '.gpu/', 'tmp/', 'models/', 'adapters/', 'bench-results/', 'loadtest-results/', 'docs/'],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // `_`-prefixed names are deliberately unused (positional parameters, destructuring to drop a field).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // Loosely typed fixtures (parsed YAML, JSON, Kubernetes manifests) are read through `any` in tests and tools.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['public/**/*.js'],
    languageOptions: { globals: { ...globals.browser } },
  },
  prettier,
);
