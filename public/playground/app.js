// @ts-check
/**
 * The playground page's entry: the API key (this tab's session storage only), the model list from
 * GET /v1/models, the Run that streams one panel per checked model (all requests sent together, so the server
 * batches them, mixed adapters included), and the adapters view.
 */
import { Api, ApiError } from './api.js';
import { renderAdapters } from './adapters.js';
import { addPanel } from './panels.js';
import { runModel } from './run.js';

const KEY_STORAGE = 'lora-playground-api-key';

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{new (): T}} type
 * @returns {T}
 */
function byId(id, type) {
  const node = document.getElementById(id);
  if (!(node instanceof type)) throw new Error(`#${id} is missing or not a ${type.name}`);
  return node;
}

const ui = {
  keyForm: byId('key-form', HTMLFormElement),
  key: byId('api-key', HTMLInputElement),
  forgetKey: byId('forget-key', HTMLButtonElement),
  status: byId('status', HTMLParagraphElement),
  runForm: byId('run-form', HTMLFormElement),
  prompt: byId('prompt', HTMLTextAreaElement),
  modelList: byId('model-list', HTMLDivElement),
  modelsEmpty: byId('models-empty', HTMLParagraphElement),
  temperature: byId('temperature', HTMLInputElement),
  maxTokens: byId('max-tokens', HTMLInputElement),
  seed: byId('seed', HTMLInputElement),
  run: byId('run', HTMLButtonElement),
  stop: byId('stop', HTMLButtonElement),
  panels: byId('panels', HTMLDivElement),
  answersEmpty: byId('answers-empty', HTMLParagraphElement),
  adapters: /** @type {HTMLTableSectionElement} */ (byId('adapters', HTMLTableElement).tBodies[0]),
  adaptersStatus: byId('adapters-status', HTMLParagraphElement),
  refreshAdapters: byId('refresh-adapters', HTMLButtonElement),
};

const api = new Api(() => sessionStorage.getItem(KEY_STORAGE) ?? '');

/**
 * @param {HTMLElement} node
 * @param {string} text '' hides it
 * @param {'info' | 'error'} [kind]
 */
function show(node, text, kind = 'info') {
  node.textContent = text;
  node.hidden = text === '';
  node.classList.toggle('error', kind === 'error');
  node.setAttribute('role', kind === 'error' ? 'alert' : 'status');
}

/** @param {unknown} e */
function explain(e) {
  if (!(e instanceof ApiError)) return String(e);
  const hint =
    e.status === 401 ? ' Enter an API key above.' : e.status === 403 ? ' This key may not do that.' : e.status === 503 ? ' Trying again in a moment.' : '';
  return `The server answered ${e.describe()}${hint}`;
}

/** @type {number | undefined} */
let retryTimer;
/** Loads the models and adapters again in a while: a 503 (the model still loading, overload) passes. */
function retryLater() {
  if (retryTimer !== undefined) return;
  retryTimer = window.setTimeout(() => {
    retryTimer = undefined;
    void Promise.all([loadModels(), loadAdapters()]);
  }, 2000);
}

/** @typedef {{id: string, owned_by: string, parent: string | null}} ModelCard */

/** @param {ModelCard} m */
function kindOf(m) {
  if (m.owned_by === 'bedrock') return 'Bedrock';
  return m.parent === null ? 'base' : 'adapter';
}

/** @type {Map<string, string>} model id -> kind */
const modelKinds = new Map();

async function loadModels() {
  const checked = new Set(selectedModels());
  let models;
  try {
    models = /** @type {{data: ModelCard[]}} */ (await api.json('/v1/models')).data;
  } catch (e) {
    ui.modelList.replaceChildren();
    modelKinds.clear();
    show(ui.modelsEmpty, 'No models to show.');
    show(ui.status, explain(e), 'error');
    if (e instanceof ApiError && e.status === 503) retryLater();
    return;
  }
  show(ui.status, '');
  modelKinds.clear();
  const items = models.map((m, i) => {
    const kind = kindOf(m);
    modelKinds.set(m.id, kind);
    const label = document.createElement('label');
    label.className = 'choice model';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'model';
    box.value = m.id;
    box.id = `model-${i}`;
    box.checked = checked.size ? checked.has(m.id) : kind === 'base';
    const name = document.createElement('span');
    name.textContent = m.id;
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = kind;
    label.append(box, ' ', name, ' ', badge);
    return label;
  });
  ui.modelList.replaceChildren(...items);
  // How many times the list was drawn: the browser test waits on it before clicking.
  ui.modelList.dataset.loads = String(Number(ui.modelList.dataset.loads ?? 0) + 1);
  show(ui.modelsEmpty, items.length ? '' : 'This key may use no models.');
}

/** @returns {string[]} */
function selectedModels() {
  return [...ui.modelList.querySelectorAll('input[name="model"]:checked')].map((box) => /** @type {HTMLInputElement} */ (box).value);
}

/** Whether the adapters' message is the last load's failure (cleared by the next load that works). */
let adaptersLoadFailed = false;

async function loadAdapters() {
  try {
    const list = (await api.json('/v1/adapters')).data;
    renderAdapters(ui.adapters, list, (name, pin) => void setPinned(name, pin));
    // How many times the table was drawn: the browser test waits on it before clicking.
    ui.adapters.dataset.loads = String(Number(ui.adapters.dataset.loads ?? 0) + 1);
    if (adaptersLoadFailed) show(ui.adaptersStatus, '');
    adaptersLoadFailed = false;
  } catch (e) {
    ui.adapters.replaceChildren();
    show(ui.adaptersStatus, explain(e), 'error');
    adaptersLoadFailed = true;
    if (e instanceof ApiError && e.status === 503) retryLater();
  }
}

/**
 * @param {string} name
 * @param {boolean} pin
 */
async function setPinned(name, pin) {
  try {
    await api.json(`/v1/adapters/${encodeURIComponent(name)}/${pin ? 'pin' : 'unpin'}`, { method: 'POST' });
    show(ui.adaptersStatus, `${pin ? 'Pinned' : 'Unpinned'} ${name}.`);
  } catch (e) {
    show(ui.adaptersStatus, explain(e), 'error');
  }
  await loadAdapters();
}

/** @param {HTMLInputElement} input @param {number} fallback */
function numberFrom(input, fallback) {
  const value = input.valueAsNumber;
  return Number.isFinite(value) ? value : fallback;
}

/** @type {AbortController | null} */
let running = null;

async function run() {
  const models = selectedModels();
  if (!ui.prompt.value.trim()) return show(ui.status, 'Type a prompt first.', 'error');
  if (!models.length) return show(ui.status, 'Check at least one model.', 'error');
  show(ui.status, '');
  /** @type {import('./run.js').RunSettings} */
  const settings = {
    mode: /** @type {HTMLInputElement | null} */ (ui.runForm.querySelector('input[name="mode"]:checked'))?.value === 'completion' ? 'completion' : 'chat',
    prompt: ui.prompt.value,
    temperature: numberFrom(ui.temperature, 0),
    maxTokens: Math.max(1, Math.trunc(numberFrom(ui.maxTokens, 128))),
    seed: ui.seed.value.trim() === '' ? null : Math.trunc(numberFrom(ui.seed, 0)),
  };
  const controller = new AbortController();
  running = controller;
  ui.run.disabled = true;
  ui.stop.disabled = false;
  ui.panels.replaceChildren();
  ui.answersEmpty.hidden = true;
  ui.panels.dataset.state = 'running';
  // Every request starts before any is awaited: they reach the server together.
  const runs = models.map((model) => runModel(api, model, settings, addPanel(ui.panels, model, modelKinds.get(model) ?? 'model'), controller.signal));
  await Promise.all(runs);
  if (running === controller) running = null;
  ui.run.disabled = false;
  ui.stop.disabled = true;
  ui.panels.dataset.state = 'done';
  await loadAdapters();
}

ui.runForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!running) void run();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    ui.runForm.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => running?.abort());

ui.keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = ui.key.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  show(ui.adaptersStatus, '');
  void Promise.all([loadModels(), loadAdapters()]).then(() => {
    if (ui.status.hidden) show(ui.status, key ? 'Using this key for this tab.' : 'Sending no key.');
  });
});
ui.forgetKey.addEventListener('click', () => {
  ui.key.value = '';
  ui.keyForm.requestSubmit();
});
ui.refreshAdapters.addEventListener('click', () => {
  show(ui.adaptersStatus, '');
  void loadAdapters();
});

ui.key.value = sessionStorage.getItem(KEY_STORAGE) ?? '';
void Promise.all([loadModels(), loadAdapters()]).then(() => {
  document.body.dataset.loaded = 'true';
});
