// @ts-check
/**
 * The adapters view: GET /v1/adapters as a table (status, with the reason when errored; rank, targets, size,
 * pinned, hits, requests in use) and a pin/unpin button per adapter (POST /v1/adapters/:name/pin|unpin; the
 * server refuses them without an admin key, and the page shows its answer).
 */

/** @param {number} bytes */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '–';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * @typedef {object} AdapterRow as GET /v1/adapters sends it
 * @property {string} name
 * @property {string} status available, loading, host, device or errored
 * @property {number | null} rank
 * @property {string[]} targets
 * @property {number} bytes
 * @property {number} hits
 * @property {boolean} pinned
 * @property {number} in_use
 * @property {string} [error]
 */

/**
 * @param {HTMLTableSectionElement} tbody
 * @param {AdapterRow[]} adapters
 * @param {(name: string, pin: boolean) => void} onPin
 */
export function renderAdapters(tbody, adapters, onPin) {
  const rows = adapters.map((a) => {
    const row = document.createElement('tr');
    row.dataset.adapter = a.name;
    const cell = (/** @type {string} */ text, /** @type {string} */ field, /** @type {string} */ label) => {
      const td = document.createElement('td');
      td.dataset.field = field;
      // Shown before the value where a narrow screen stacks the table's cells (playground.css).
      td.dataset.label = label;
      td.textContent = text;
      row.append(td);
      return td;
    };
    const name = document.createElement('th');
    name.scope = 'row';
    name.dataset.field = 'name';
    name.textContent = a.name;
    row.append(name);
    const status = cell(a.status, 'status', 'Status');
    status.className = `status status-${a.status}`;
    if (a.error) {
      const reason = document.createElement('span');
      reason.className = 'reason';
      reason.textContent = a.error;
      status.append(document.createElement('br'), reason);
    }
    cell(a.rank === null || a.rank === undefined ? '–' : String(a.rank), 'rank', 'Rank');
    cell(Array.isArray(a.targets) && a.targets.length ? a.targets.join(', ') : '–', 'targets', 'Targets');
    cell(formatBytes(a.bytes), 'size', 'Size');
    cell(a.pinned ? 'yes' : 'no', 'pinned', 'Pinned');
    cell(String(a.hits ?? 0), 'hits', 'Hits');
    cell(String(a.in_use ?? 0), 'in_use', 'In use');
    const action = cell('', 'action', '');
    if (a.status !== 'errored') {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = a.pinned ? 'Unpin' : 'Pin';
      button.setAttribute('aria-label', `${a.pinned ? 'Unpin' : 'Pin'} ${a.name}`);
      button.addEventListener('click', () => onPin(a.name, !a.pinned));
      action.append(button);
    }
    return row;
  });
  tbody.replaceChildren(...rows);
}
