// loyalty-points: a plugwatch example plugin, written in JavaScript.
//
// Hooks `order.pricing` and `order.completed`: computes the loyalty points an order earns and
// returns the order plus `"loyalty": {"points_earned", "tier", "rule"}`. Every other hook gets
// its input back unchanged.
//
//   points = floor(amount * points_per_1000 / 1000 * tier multiplier)
//
// where amount is the order's `total` (set by a pricing plugin such as promo-discount) or, when
// there is none, the sum of its items. Host config (both optional):
//   points_per_1000   a non-negative number, default 10
//   tier_multipliers  a JSON object of tier -> non-negative number, replacing the default
//                     {"gold": 2, "silver": 1.5}; tiers not listed earn x1
//
// Built with componentize-js (see ../README.md). The plugin uses no network: it is built
// without the `http` feature, so it cannot even import wasi:http.

import { log, config } from 'plugwatch:plugin/host@0.1.0';

const HOOKS = new Set(['order.pricing', 'order.completed']);
const DEFAULT_POINTS_PER_1000 = 10;
// Lookup tables have no prototype, so a tier named e.g. "constructor" is simply not listed.
const DEFAULT_TIER_MULTIPLIERS = Object.assign(Object.create(null), { gold: 2, silver: 1.5 });

// componentize-js returns `err(payload)` for a thrown value that has its own `payload`
// property; any other thrown Error would trap the component instead.
class PluginError extends Error {
  constructor(message) {
    super(message);
    this.payload = message;
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

export function handle(hook, input) {
  if (!HOOKS.has(hook)) return input;

  const order = parseOrder(input);
  const tier = order.customer_tier ?? null;
  const { amount, source } = orderAmount(order);
  const perThousand = pointsPer1000();
  const multipliers = tierMultipliers();
  const multiplier = tier === null ? 1 : (multipliers[tier] ?? 1);

  // Round away floating-point noise (e.g. 1.1 * 3 = 3.3000000000000003) before flooring.
  const exact = Math.round(((amount * perThousand) / 1000) * multiplier * 1e6) / 1e6;
  const points = Math.floor(exact);

  order.loyalty = {
    points_earned: points,
    tier,
    rule: `${perThousand} points per 1000 of ${source} ${amount}, x${multiplier} for tier ${tier ?? '(none)'}`,
  };
  log('info', `order ${order.order_id}: ${points} loyalty points (${hook})`);
  return encoder.encode(JSON.stringify(order));
}

function parseOrder(input) {
  let text, order;
  try {
    text = decoder.decode(input);
  } catch {
    throw new PluginError('input is not valid UTF-8');
  }
  try {
    order = JSON.parse(text);
  } catch (e) {
    throw new PluginError(`input is not valid JSON: ${e.message}`);
  }
  if (order === null || typeof order !== 'object' || Array.isArray(order)) {
    throw new PluginError('input must be a JSON object (an order)');
  }
  if (order.customer_tier != null && typeof order.customer_tier !== 'string') {
    throw new PluginError('customer_tier must be a string when present');
  }
  return order;
}

const isCount = (v) => Number.isSafeInteger(v) && v >= 0;

// The amount points are earned on: `total` if present, else the sum of the items.
function orderAmount(order) {
  if (order.total != null) {
    if (!isCount(order.total)) throw new PluginError('total must be a non-negative integer');
    return { amount: order.total, source: 'total' };
  }
  const items = order.items;
  if (!Array.isArray(items) || items.length === 0) {
    throw new PluginError('items must be a non-empty array (or total must be present)');
  }
  let sum = 0;
  items.forEach((item, i) => {
    if (item === null || typeof item !== 'object') throw new PluginError(`items[${i}] must be an object`);
    if (!isCount(item.quantity) || item.quantity === 0) {
      throw new PluginError(`items[${i}].quantity must be a positive integer`);
    }
    if (!isCount(item.unit_price)) {
      throw new PluginError(`items[${i}].unit_price must be a non-negative integer`);
    }
    sum += item.quantity * item.unit_price;
  });
  return { amount: sum, source: 'items' };
}

function pointsPer1000() {
  const raw = config('points_per_1000');
  if (raw === undefined || raw === null) return DEFAULT_POINTS_PER_1000;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || value < 0) {
    throw new PluginError(`config points_per_1000 must be a non-negative number, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function tierMultipliers() {
  const raw = config('tier_multipliers');
  if (raw === undefined || raw === null) return DEFAULT_TIER_MULTIPLIERS;
  let table;
  try {
    table = JSON.parse(raw);
  } catch (e) {
    throw new PluginError(`config tier_multipliers is not valid JSON: ${e.message}`);
  }
  if (table === null || typeof table !== 'object' || Array.isArray(table)) {
    throw new PluginError('config tier_multipliers must be a JSON object of tier -> multiplier');
  }
  for (const [tier, m] of Object.entries(table)) {
    if (typeof m !== 'number' || !Number.isFinite(m) || m < 0) {
      throw new PluginError(`config tier_multipliers[${JSON.stringify(tier)}] must be a non-negative number`);
    }
  }
  return Object.assign(Object.create(null), table);
}
