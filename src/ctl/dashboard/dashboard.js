/* dashboard.js - fills the qkm dashboard from the controller's JSON API
 * (docs/controller.md): GET /status (every node's last report, routes,
 * mode), /saes, /records and /trace, every 2 s. The browser authenticates
 * with the operator's client certificate; this script only reads. Every
 * text from the network goes in through textContent, never as markup. */
'use strict';

(function () {
	const REFRESH_MS = 2000;
	const EVENTS_SHOWN = 50;
	const STALE_MS = 5000;          /* a report older than this: link state unknown */
	const RELAY_NEED = 65536 + 32;  /* one relay batch and its MAC key (controller.c) */
	const STOCK_HIGH = 16 * RELAY_NEED; /* routing's reserve (docs/routing.md) */
	const SVG = 'http://www.w3.org/2000/svg';

	const $ = (id) => document.getElementById(id);
	const state = {
		status: null,
		saes: [],
		chains: {},      /* chain name -> {seq, records: [...]} */
		ownSeq: 0,       /* the controller's own chain: read up to here */
		ownRecords: [],
		rates: {},       /* SAE -> {total, at, perSec} */
		traced: [],      /* hops [a, b] of the traced key */
		timer: null,
	};

	/* ---- helpers ---- */

	function el(tag, attrs, ...kids) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (k === 'class')
				e.className = v;
			else
				e.setAttribute(k, v);
		}
		for (const k of kids)
			e.append(k instanceof Node ? k : document.createTextNode(String(k)));
		return e;
	}

	function svg(tag, attrs, ...kids) {
		const e = document.createElementNS(SVG, tag);
		for (const [k, v] of Object.entries(attrs || {}))
			e.setAttribute(k, String(v));
		for (const k of kids)
			e.append(k instanceof Node ? k : document.createTextNode(String(k)));
		return e;
	}

	function bytes(n) {
		if (n === undefined || n === null)
			return '?';
		if (n < 1024)
			return n + ' B';
		if (n < 1024 * 1024)
			return (n / 1024).toFixed(1) + ' KiB';
		return (n / 1024 / 1024).toFixed(2) + ' MiB';
	}

	function pct(q) {
		return (100 * q).toFixed(2) + ' %';
	}

	async function getJSON(path) {
		const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
		let body = null;
		try {
			body = await r.json();
		} catch (e) {
			body = null;
		}
		if (!r.ok) {
			const msg = body && body.message ? body.message : r.status + ' ' + r.statusText;
			throw new Error(path.split('?')[0] + ': ' + msg);
		}
		return body;
	}

	function setBody(table, rows, emptyText, cols) {
		const tb = table.tBodies[0];
		tb.replaceChildren(...rows);
		if (!rows.length)
			tb.append(el('tr', {}, el('td', { class: 'empty', colspan: String(cols) }, emptyText)));
	}

	/* ---- the network view ---- */

	/* Links from both ends' reports: one entry per link, keyed by name. */
	function linksOf(st) {
		const links = new Map();
		for (const n of st.nodes) {
			const s = n.status;
			if (!s || !n.connected)
				continue;
			const fresh = n.report_age_ms >= 0 && n.report_age_ms <= STALE_MS;
			for (const l of s.links || []) {
				const [a, b] = [n.id, l.peer].sort();
				const key = a + '|' + b;
				let x = links.get(key);
				if (!x) {
					x = { name: l.link, a: a, b: b, ends: [] };
					links.set(key, x);
				}
				const pool = (s.pools || []).find((p) => p.kind === 'link' && p.peer === l.peer);
				x.ends.push({
					node: n.id, fresh: fresh, qber: l.qber, rate: l.rate_bps, alarm: l.alarm || '',
					up: l.module_up && l.kx_up && l.reconciled,
					why: !l.module_up ? 'QKD module down' : !l.kx_up ? 'Kx link down'
						: !l.reconciled ? 'not reconciled' : '',
					stock: pool ? pool.enc_bytes : undefined,
				});
			}
		}
		for (const x of links.values()) {
			const fresh = x.ends.filter((e) => e.fresh);
			x.alarms = fresh.filter((e) => e.alarm);
			x.downs = fresh.filter((e) => !e.up);
			x.qber = Math.max(...x.ends.map((e) => e.qber || 0));
			x.rate = Math.max(...x.ends.map((e) => e.rate || 0));
			const stocks = x.ends.map((e) => e.stock).filter((v) => v !== undefined);
			x.stock = stocks.length ? Math.min(...stocks) : undefined;
			x.state = !fresh.length ? 'unknown' : x.alarms.length ? 'alarm' : x.downs.length ? 'down'
				: x.stock === undefined ? 'unknown' : x.stock >= STOCK_HIGH ? 'high'
				: x.stock >= RELAY_NEED ? 'low' : 'empty';
		}
		return [...links.values()];
	}

	function drawMap(st, links) {
		const map = $('map');
		const keep = map.querySelector('title');
		map.replaceChildren(keep);
		const W = 640, H = 460, cx = W / 2, cy = H / 2, R = Math.min(W, H) / 2 - 50;
		const pos = {};
		const n = st.nodes.length;
		st.nodes.forEach((node, i) => {
			const t = -Math.PI / 2 + (2 * Math.PI * i) / n;
			pos[node.id] = n === 1 ? [cx, cy] : [cx + R * Math.cos(t), cy + R * Math.sin(t)];
		});
		const traced = new Set(state.traced.map((h) => [h[0], h[1]].sort().join('|')));
		const gl = svg('g', { class: 'links' });
		for (const x of links) {
			if (!pos[x.a] || !pos[x.b])
				continue;
			const [x1, y1] = pos[x.a], [x2, y2] = pos[x.b];
			const g = svg('g', { class: 'link ' + x.state, 'data-link': x.name });
			const title = [x.name + ': ' + (x.state === 'alarm' ? 'ALARM' : x.state === 'down' ? 'DOWN' : 'up'),
				'QBER ' + pct(x.qber), 'key rate ' + (x.rate / 1e6).toFixed(2) + ' Mbit/s',
				'stock ' + bytes(x.stock) + ' (lower direction)']
				.concat(x.alarms.map((e) => 'alarm at ' + e.node + ': ' + e.alarm))
				.concat(x.downs.map((e) => e.node + ': ' + e.why));
			g.append(svg('title', {}, title.join('\n')));
			if (traced.has(x.a + '|' + x.b))
				g.append(svg('line', { class: 'trace', x1: x1, y1: y1, x2: x2, y2: y2 }));
			g.append(svg('line', { class: 'wire', x1: x1, y1: y1, x2: x2, y2: y2 }));
			g.append(svg('line', { class: 'hit', x1: x1, y1: y1, x2: x2, y2: y2 }));
			/* Labels beside the link's middle, on the side away from the
			 * centre of the map: QBER (and the state), then the stock. */
			const mx = (x1 + x2) / 2, my = (y1 + y2) / 2, len = Math.hypot(x2 - x1, y2 - y1) || 1;
			let nx = -(y2 - y1) / len, ny = (x2 - x1) / len;
			if (nx * (mx - cx) + ny * (my - cy) < 0 || (Math.abs(mx - cx) < 1 && Math.abs(my - cy) < 1 && nx < 0))
				[nx, ny] = [-nx, -ny];
			const px = mx + 12 * nx, py = my + 12 * ny;
			let anchor = 'middle', y0 = ny > 0 ? py + 12 : py - 18;
			if (Math.abs(nx) > 0.35) { /* beside a steep link, not across it */
				anchor = nx > 0 ? 'start' : 'end';
				y0 = py - 4;
			}
			const label = svg('text', { x: px, y: y0, 'text-anchor': anchor });
			if (x.state === 'alarm' || x.state === 'down')
				label.append(svg('tspan', { class: 'state' }, x.state.toUpperCase() + ' '));
			label.append(svg('tspan', {}, 'QBER ' + pct(x.qber)));
			g.append(label);
			g.append(svg('text', { x: px, y: y0 + 15, 'text-anchor': anchor, class: 'stock' }, 'stock ' + bytes(x.stock)));
			gl.append(g);
		}
		map.append(gl);
		const gn = svg('g', { class: 'nodes' });
		for (const node of st.nodes) {
			const [x, y] = pos[node.id];
			const stale = node.connected && !(node.report_age_ms >= 0 && node.report_age_ms <= STALE_MS);
			const cls = !node.connected ? 'offline' : stale ? 'stale' : 'up';
			const g = svg('g', { class: 'node ' + cls, 'data-node': node.id });
			const s = node.status;
			g.append(svg('title', {}, node.id + (node.connected ? ': connected' : ': not connected') +
				(node.report_age_ms >= 0 ? ', report ' + (node.report_age_ms / 1000).toFixed(1) + ' s old' : '') +
				(s ? '\n' + (s.pools || []).length + ' pools, supplied keys ' + s.counters.supplied_keys +
					', relayed ' + bytes(s.counters.relayed_bytes) : '')));
			/* A pill wide enough for the name (about 9 px a character). */
			const w = Math.max(64, 9.2 * node.id.length + 26);
			g.append(svg('rect', { x: x - w / 2, y: y - 20, width: w, height: 40, rx: 20 }));
			g.append(svg('text', { class: 'name', x: x, y: y + 5 }, node.id));
			if (cls !== 'up')
				g.append(svg('text', { class: 'sub', x: x, y: y + 36 },
					!node.connected ? 'not connected' : 'no recent report'));
			gn.append(g);
		}
		map.append(gn);
	}

	function drawAlarms(st, links) {
		const items = [];
		for (const x of links) {
			if (x.alarms.length) {
				const what = [...new Set(x.alarms.map((e) => e.alarm))].join('; ');
				items.push(el('li', { class: 'alarm', 'data-link': x.name },
					el('b', {}, x.name), ' alarm: ' + what + ' (QBER ' + pct(x.qber) + ', reported by ' +
					x.alarms.map((e) => e.node).join(' and ') + ')'));
			} else if (x.downs.length) {
				items.push(el('li', { class: 'alarm', 'data-link': x.name },
					el('b', {}, x.name), ' down: ' + x.downs.map((e) => e.why + ' at ' + e.node).join(', ')));
			}
		}
		for (const node of st.nodes) {
			if (!node.connected)
				items.push(el('li', { class: 'warn', 'data-node': node.id }, el('b', {}, node.id),
					' is not connected to the controller'));
			else if (!(node.report_age_ms >= 0 && node.report_age_ms <= STALE_MS))
				items.push(el('li', { class: 'warn', 'data-node': node.id }, el('b', {}, node.id),
					node.report_age_ms < 0 ? ' has not reported yet'
						: ' last reported ' + (node.report_age_ms / 1000).toFixed(0) + ' s ago'));
		}
		if (!items.length)
			items.push(el('li', { class: 'none' }, 'No alarms: every link up, every node reporting.'));
		$('alarms').replaceChildren(...items);
	}

	function drawRoutes(st) {
		const rows = [];
		for (const node of st.nodes)
			for (const r of node.routes || [])
				rows.push(el('tr', { 'data-from': node.id, 'data-to': r.to },
					el('td', {}, node.id), el('td', {}, r.to),
					el('td', { class: 'mono' }, r.path.split('>').join(' \u2192 ')), el('td', {}, r.mode)));
		setBody($('routes'), rows, 'No relay routes (every pair of nodes shares a link, or none reported yet).', 4);
	}

	function drawSaes(st, saes) {
		const counts = {};
		for (const node of st.nodes)
			for (const s of (node.status && node.status.saes) || []) {
				const c = counts[s.id] || (counts[s.id] = { enc: 0, dec: 0 });
				c.enc += s.enc_keys;
				c.dec += s.dec_keys;
			}
		const now = Date.now();
		const rows = [];
		const names = new Set(saes.map((s) => s.id).concat(Object.keys(counts)));
		for (const id of [...names].sort()) {
			const reg = saes.find((s) => s.id === id) || { node: '?', revoked: false };
			const c = counts[id] || { enc: 0, dec: 0 };
			const total = c.enc + c.dec;
			const prev = state.rates[id];
			let perSec = prev ? prev.perSec : 0;
			if (prev && now > prev.at && total !== prev.total)
				perSec = (total - prev.total) / ((now - prev.at) / 1000);
			else if (prev && now - prev.changed > 2 * REFRESH_MS + 500)
				perSec = 0;
			state.rates[id] = { total: total, at: now, perSec: perSec,
				changed: !prev || total !== prev.total ? now : prev.changed };
			rows.push(el('tr', { class: reg.revoked ? 'revoked' : '', 'data-sae': id },
				el('td', {}, id), el('td', {}, reg.node), el('td', { class: 'num' }, c.enc),
				el('td', { class: 'num' }, c.dec), el('td', { class: 'num' }, perSec.toFixed(1)),
				el('td', {}, reg.revoked ? 'revoked' : 'registered')));
		}
		setBody($('saes'), rows, 'No SAE registered.', 6);
	}

	/* ---- events: the last of every chain, merged by time ---- */

	async function refreshEvents(st) {
		const jobs = [];
		for (const node of st.nodes) {
			const c = state.chains[node.id] || (state.chains[node.id] = { seq: -1, records: [] });
			if (c.seq === node.records)
				continue;
			const after = Math.max(0, node.records - EVENTS_SHOWN);
			jobs.push(getJSON('/records?node=' + encodeURIComponent(node.id) + '&after=' + after +
				'&limit=' + EVENTS_SHOWN).then((recs) => {
				c.seq = node.records;
				c.records = recs;
			}));
		}
		/* The controller's own chain: its length is not in /status; read on
		 * from where the last read ended. */
		jobs.push((async () => {
			for (let page = 0; page < 20; page++) {
				const recs = await getJSON('/records?node=' + encodeURIComponent(st.controller) +
					'&after=' + state.ownSeq + '&limit=1000');
				if (!recs.length)
					break;
				state.ownSeq = recs[recs.length - 1].seq;
				state.ownRecords = state.ownRecords.concat(recs).slice(-EVENTS_SHOWN);
				if (recs.length < 1000)
					break;
			}
		})());
		await Promise.all(jobs);
		let all = state.ownRecords.slice();
		for (const c of Object.values(state.chains))
			all = all.concat(c.records);
		all.sort((x, y) => (x.time < y.time ? 1 : x.time > y.time ? -1 : y.seq - x.seq));
		const rows = all.slice(0, EVENTS_SHOWN).map((r) => {
			const keyCell = el('td', { class: 'mono' });
			const tok = traceable(r.key_id);
			if (tok) {
				const b = el('button', { class: 'key', type: 'button', title: 'trace this key' }, r.key_id);
				b.addEventListener('click', () => trace(tok));
				keyCell.append(b);
			} else {
				keyCell.append(r.key_id);
			}
			return el('tr', {}, el('td', { class: 'mono', title: r.time }, r.time.replace('T', ' ').replace(/\d{3}Z$/, '')),
				el('td', {}, r.node), el('td', {}, r.event), el('td', {}, r.key_kind), keyCell,
				el('td', { class: 'detail' }, r.detail));
		});
		setBody($('events'), rows, 'No life-cycle record yet.', 6);
	}

	/* A key ID the trace accepts: a UUID, or 32 hex digits (a range's
	 * "[first..last]" dropped). A run of a KSA supply round's keys,
	 * "<round UUID>[first..last]", traces its first key: the round's
	 * records that name that key include the run. */
	function traceable(id) {
		const run = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4})00000000\[(\d+)\.\./.exec(id || '');
		if (run)
			return run[1] + Number(run[2]).toString(16).padStart(8, '0');
		const m = /^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})/.exec(id || '');
		return m ? m[1] : null;
	}

	/* ---- trace ---- */

	const STAGE = { qkd: 'KMA-key', kma: 'KMA-key', relayed: 'relay', ksa: 'KSA-key' };

	async function trace(key) {
		key = key.trim();
		$('trace-key').value = key;
		history.replaceState(null, '', '#trace=' + encodeURIComponent(key));
		const out = $('trace-out');
		out.replaceChildren(el('p', { class: 'note' }, 'tracing ' + key + '\u2026'));
		let t;
		try {
			t = await getJSON('/trace?key=' + encodeURIComponent(key));
		} catch (e) {
			state.traced = [];
			out.replaceChildren(el('p', { class: 'err' }, e.message));
			redraw();
			return;
		}
		/* Every hop of every relay that carried the key, as the destination
		 * recorded it: "hops: A>B otp TIME; B>C otp TIME". */
		const hops = [];
		for (const r of t.records) {
			const i = r.detail.indexOf('hops: ');
			if (r.event !== 'relay-received' || i < 0)
				continue;
			for (const part of r.detail.slice(i + 6).split(';')) {
				const m = /^\s*([\w.:-]+)>([\w.:-]+)\s+(\S+)/.exec(part);
				if (m && !hops.some((h) => h[0] === m[1] && h[1] === m[2]))
					hops.push([m[1], m[2], m[3]]);
			}
		}
		state.traced = hops;
		const parts = [el('p', { class: 'summary' }, t.summary)];
		if (hops.length) {
			const strip = el('ol', { class: 'hops', 'aria-label': 'relay hops' });
			hops.forEach((h, i) => {
				if (i === 0 || hops[i - 1][1] !== h[0])
					strip.append(el('li', { 'data-node': h[0] }, h[0]));
				strip.append(el('li', { class: 'method' }, '\u2014' + h[2] + '\u2192'));
				strip.append(el('li', { 'data-node': h[1] }, h[1]));
			});
			parts.push(el('p', { class: 'note' }, 'relay hops (' + hops.length + '):'), strip);
		}
		if (t.supplied.length)
			parts.push(el('ul', { class: 'supplied' }, ...t.supplied.map((s) => el('li', {}, 'supplied: ' + s))));
		const rows = t.records.map((r) => el('tr', { class: r.key_kind, 'data-event': r.event, 'data-node': r.node },
			el('td', { class: 'mono' }, r.time.replace('T', ' ')), el('td', {}, STAGE[r.key_kind] || r.key_kind),
			el('td', {}, r.node), el('td', {}, r.event), el('td', { class: 'mono' }, r.key_id),
			el('td', { class: 'detail' }, r.detail)));
		const table = el('table', { id: 'trace-lines' },
			el('thead', {}, el('tr', {}, ...['time (UTC)', 'stage', 'node', 'event', 'key', 'detail'].map((h) => el('th', {}, h)))),
			el('tbody', {}, ...rows));
		parts.push(el('div', { class: 'lineage' }, table));
		out.replaceChildren(...parts);
		redraw();
	}

	/* ---- refresh ---- */

	function redraw() {
		if (!state.status)
			return;
		const links = linksOf(state.status);
		drawMap(state.status, links);
		drawAlarms(state.status, links);
	}

	async function refresh() {
		try {
			const [st, saes] = await Promise.all([getJSON('/status'), getJSON('/saes')]);
			state.status = st;
			state.saes = saes;
			if (st.network)
				$('network').textContent = st.network;
			$('controller').textContent = st.controller + ' at ' + location.host;
			$('mode').textContent = st.mode;
			$('nodes-up').textContent = st.nodes.filter((n) => n.connected).length + ' of ' + st.nodes.length;
			document.title = 'qkm \u2014 ' + (st.network || st.controller);
			redraw();
			drawRoutes(st);
			drawSaes(st, saes);
			await refreshEvents(st);
			$('updated').textContent = new Date().toISOString().slice(11, 19) + ' UTC';
			$('error').hidden = true;
		} catch (e) {
			$('error').textContent = 'Cannot read the controller: ' + e.message;
			$('error').hidden = false;
		}
		state.timer = setTimeout(refresh, REFRESH_MS);
	}

	document.addEventListener('DOMContentLoaded', () => {
		$('trace-form').addEventListener('submit', (ev) => {
			ev.preventDefault();
			if ($('trace-key').value.trim())
				trace($('trace-key').value);
		});
		const m = /^#trace=(.+)$/.exec(location.hash);
		if (m)
			trace(decodeURIComponent(m[1]));
		refresh();
	});
})();
