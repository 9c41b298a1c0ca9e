"""The restaurant mix: a Locust scenario against a real `plugwatch serve --demo` (`cargo xtask load`).

Four kinds of user, in the proportions of the class weights below:

- ``HostApp`` (most traffic): the restaurant ordering platform, with an invoker service token. Each of its
  tasks is one customer's checkout: the cart is priced through the ``order.pricing`` filter chain
  (promo-discount in Python, fail_closed; loyalty-points in JavaScript; delivery-quote in WAT, slow and
  flaky, fail_open) once to three times as the customer edits it, then most carts are paid and
  ``order.completed`` is fired in actions mode with the priced order. Orders vary in items, quantities,
  customers, tiers, coupon codes (valid, unknown, lower-case, expired) and size (the odd catering order);
  one in 25 is invalid as real clients send them (a zero quantity, a negative price, no items), which
  promo-discount refuses, so the chain answers 502 naming it: the expected answer, counted as a success.
- ``Storefront``: direct invokes of the demo plugins (a loyalty-points preview and a promo-code check in
  the JSON envelope, a delivery quote through the raw endpoint), with an invoker service token.
- ``Operator``: a person signed in with a password (cookie session) reading the dashboard: the
  ``/plugin-monitoring`` shell and its assets (every response is ``no-store``, so a browser fetches them on
  every load), the overview with sparklines and alerts, a plugin's page (detail, headroom, run log, series),
  the failures-only run log, the host series, a longer series range.
- ``Misbehaving``: the odd bad request (malformed JSON, an unknown mode, an unknown plugin, an input over
  the plugin's 1 MiB limit, a body field the API does not know, no credentials), each of which must get its
  documented 4xx.

Every request is named by its endpoint template (``name=``), so Locust's statistics group per endpoint; bad
requests carry what is wrong in the name, so their quick 4xx do not mix with the real calls' latencies.
Each response is checked (``catch_response``): an expected status is a success, anything else a failure
with the reason (an unexpected status, a plugin of ours that timed out or was rejected in the chain, a
connection error).

Credentials come from the environment, set by ``cargo xtask load``: ``PLUGWATCH_LOAD_HOST_TOKEN`` (invoker),
``PLUGWATCH_LOAD_OPERATOR_USER`` and ``PLUGWATCH_LOAD_OPERATOR_PASSWORD``. When ``PLUGWATCH_LOAD_OUT`` names
a directory, the run writes ``latencies.json`` there when it stops: per endpoint the count, failures and
exact percentiles of every response time (Locust's own percentiles are rounded to whole milliseconds and
above 100 ms to two significant digits), the first and last response's times, the users per class, and the
failures grouped by message.
"""

import json
import math
import os
import random
import time
from collections import Counter

from locust import FastHttpUser, between, events, task


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"locustfile: {name} is not set (run the scenario with `cargo xtask load`)")
    return value


HOST_TOKEN = _env("PLUGWATCH_LOAD_HOST_TOKEN")
OPERATOR_USER = _env("PLUGWATCH_LOAD_OPERATOR_USER")
OPERATOR_PASSWORD = _env("PLUGWATCH_LOAD_OPERATOR_PASSWORD")

JSON = "application/json"
HOST_HEADERS = {"authorization": f"Bearer {HOST_TOKEN}", "content-type": JSON}
RAW_HEADERS = {"authorization": f"Bearer {HOST_TOKEN}", "content-type": JSON}

PLUGINS = ("promo-discount", "loyalty-points", "delivery-quote")
# Outcomes that mean the server, not the plugin's own logic, let an invocation down: under load these are
# what a host application would notice (and what a `fail_closed` chain turns into a refused order).
BAD_OUTCOMES = ("timeout", "rejected", "fuel_exhausted", "memory_limit", "output_too_large", "input_too_large")
BAD_MARKERS = tuple(f'"outcome":"{o}"'.encode() for o in BAD_OUTCOMES)
# delivery-quote fails about one call in thirteen and traps about one in ninety-seven, on purpose.
FLAKY_OUTCOMES = ("ok", "plugin_error", "trap")

# The demo's menu (demo.rs) and a few more dishes; prices in KRW (no minor unit).
MENU = (
    ("bulgogi-bowl", "Bulgogi bowl", 12_500),
    ("bibimbap", "Bibimbap", 11_000),
    ("kimchi-jjigae", "Kimchi jjigae", 9_500),
    ("tteokbokki", "Tteokbokki", 8_000),
    ("fried-chicken", "Fried chicken", 19_000),
    ("mandu", "Mandu", 6_500),
    ("japchae", "Japchae", 10_500),
    ("haemul-pajeon", "Haemul pajeon", 15_000),
    ("soju", "Soju", 5_000),
    ("sikhye", "Sikhye", 3_500),
)
COUPONS = (None, None, None, None, "WELCOME10", "WELCOME10", "FREESHIP", "GOLD5", " welcome10 ", "SPRING25", "EXPIRED2024")
TIERS = (None, "bronze", "bronze", "silver", "gold")
NOTES = (None, None, None, "덜 맵게 해주세요", "no onions", "ring the bell twice", "수저 빼주세요")


def customer_id():
    # Regulars order far more often than the long tail.
    return f"cust-{random.randint(1, 40)}" if random.random() < 0.3 else f"cust-{random.randint(41, 20_000)}"


def new_order(order_id):
    """A cart as the ordering platform sends it; returns (order, valid)."""
    catering = random.random() < 0.02
    count = random.randint(15, 40) if catering else random.choice((1, 1, 2, 2, 2, 3, 3, 4, 5, 6))
    items = []
    for _ in range(count):
        sku, name, price = random.choice(MENU)
        items.append({"sku": sku, "name": name, "quantity": random.choice((1, 1, 1, 2, 2, 3, 4)), "unit_price": price})
    order = {
        "order_id": order_id,
        "customer_id": customer_id(),
        "restaurant_id": f"rest-{random.randint(1, 120)}",
        "currency": "KRW",
        "channel": random.choice(("app", "app", "web", "kiosk")),
        "items": items,
    }
    tier = random.choice(TIERS)
    if tier:
        order["customer_tier"] = tier
    coupon = random.choice(COUPONS)
    if coupon:
        order["promo_code"] = coupon
    note = random.choice(NOTES)
    if note:
        order["notes"] = note
    if random.random() < 0.04:
        # What real clients sometimes send: promo-discount refuses it and, fail_closed, stops the chain.
        broken = random.choice(("zero", "negative", "empty"))
        if broken == "zero":
            random.choice(items)["quantity"] = 0
        elif broken == "negative":
            random.choice(items)["unit_price"] = -1000
        else:
            order["items"] = []
        return order, False
    return order, True


def body(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def bad_outcome(content):
    """The first outcome in a response that the server, not the plugin's logic, caused; or None."""
    for marker, outcome in zip(BAD_MARKERS, BAD_OUTCOMES):
        if marker in content:
            return outcome
    return None


def chain_failure(response):
    """Which plugin of a hook's answer let the server down, and how (without the run's own figures, so that
    failures of one kind group together)."""
    try:
        runs = response.json().get("plugins") or []
    except ValueError:
        return f"HTTP {response.status_code}: a bad outcome in a body that is not JSON"
    for run in runs:
        if run.get("outcome") in BAD_OUTCOMES:
            detail = run.get("detail") or ""
            why = "wall-clock backstop, host overloaded" if "backstop" in detail else detail.split(" of ")[0][:80]
            return f"{run.get('plugin')}: {run['outcome']} ({why}), HTTP {response.status_code}"
    return f"HTTP {response.status_code}: a bad outcome"


def describe(response):
    if response.status_code == 0:
        return f"no response: {response.error!r}"
    return f"HTTP {response.status_code}: {(response.text or '')[:300]}"


class HostApp(FastHttpUser):
    """The ordering platform's backend: checkouts through the hooks, as fast as its customers click."""

    weight = 10
    wait_time = between(0.0, 0.02)

    def on_start(self):
        self.orders = 0

    @task
    def checkout(self):
        self.orders += 1
        order_id = f"ord-{id(self) % 100_000}-{self.orders}"
        order, valid = new_order(order_id)
        priced = None
        # An invalid cart is refused at once (an edit could make it valid).
        for edit in range(random.choice((1, 1, 2, 2, 3)) if valid else 1):
            if edit:
                # The customer adds a dish before paying.
                sku, name, price = random.choice(MENU)
                order["items"].append({"sku": sku, "name": name, "quantity": 1, "unit_price": price})
            priced = self.price(order, valid)
            if priced is None:
                return
        if valid and random.random() < 0.75:
            priced["payment"] = {"method": random.choice(("card", "card", "kakao-pay", "cash")), "status": "captured"}
            self.complete(priced)

    def price(self, order, valid):
        with self.client.post(
            "/api/v1/hooks/order.pricing",
            data=body({"input": order}),
            headers=HOST_HEADERS,
            name="/api/v1/hooks/order.pricing",
            catch_response=True,
        ) as r:
            content = r.content or b""
            bad = bad_outcome(content)
            if bad:
                r.failure(f"order.pricing chain: {chain_failure(r)}")
            elif valid and r.status_code == 200:
                priced = r.json().get("output")
                if isinstance(priced, dict) and "total" in priced:
                    r.success()
                    return priced
                r.failure(f"a valid order was not priced: {content[:300]!r}")
            elif not valid and r.status_code == 502 and b'"failed":"promo-discount"' in content:
                r.success()  # the invalid order was refused, as it must be
            else:
                r.failure(f"{'valid' if valid else 'invalid'} order: {describe(r)}")
        return None

    def complete(self, priced):
        with self.client.post(
            "/api/v1/hooks/order.completed",
            data=body({"mode": "actions", "input": priced}),
            headers=HOST_HEADERS,
            name="/api/v1/hooks/order.completed",
            catch_response=True,
        ) as r:
            bad = bad_outcome(r.content or b"")
            if r.status_code == 200 and bad is None and b'"outcome":"ok"' in r.content:
                r.success()
            else:
                r.failure(f"order.completed: {chain_failure(r) if bad else describe(r)}")


class Storefront(FastHttpUser):
    """The storefront's direct invokes: loyalty preview and coupon check (JSON envelope), delivery quote (raw)."""

    weight = 3
    wait_time = between(0.0, 0.05)

    def on_start(self):
        self.carts = 0

    def cart(self):
        self.carts += 1
        order, _ = new_order(f"cart-{id(self) % 100_000}-{self.carts}")
        if not order["items"]:
            order["items"] = [{"sku": "mandu", "name": "Mandu", "quantity": 1, "unit_price": 6_500}]
        for item in order["items"]:
            item["quantity"] = max(item["quantity"], 1)
            item["unit_price"] = max(item["unit_price"], 0)
        return order

    def envelope(self, plugin):
        with self.client.post(
            f"/api/v1/plugins/{plugin}/invoke",
            data=body({"hook": "order.pricing", "input": self.cart()}),
            headers=HOST_HEADERS,
            name="/api/v1/plugins/{name}/invoke",
            catch_response=True,
        ) as r:
            if r.status_code == 200 and b'"outcome":"ok"' in r.content:
                r.success()
            else:
                r.failure(f"{plugin}: {describe(r)}")

    @task(3)
    def loyalty_preview(self):
        self.envelope("loyalty-points")

    @task(2)
    def coupon_check(self):
        self.envelope("promo-discount")

    @task(2)
    def delivery_quote(self):
        with self.client.post(
            "/api/v1/plugins/delivery-quote/invoke/order.pricing",
            data=body(self.cart()),
            headers=RAW_HEADERS,
            name="/api/v1/plugins/{name}/invoke/{hook}",
            catch_response=True,
        ) as r:
            outcome = r.headers.get("plugwatch-outcome") if r.headers else None
            if r.status_code == 200 and outcome == "ok":
                r.success()
            elif r.status_code == 422 and outcome in FLAKY_OUTCOMES:
                r.success()  # the flaky courier service, by design
            else:
                r.failure(f"delivery-quote raw ({outcome}): {describe(r)}")


class Operator(FastHttpUser):
    """Someone signed in to the dashboard: pages, a plugin's numbers, the run log, the host."""

    weight = 1
    # Under the server's 5 s keep-alive, as a browser's page polling keeps its connection.
    wait_time = between(1.0, 4.0)

    def on_start(self):
        with self.client.post(
            "/api/v1/auth/login",
            data=body({"username": OPERATOR_USER, "password": OPERATOR_PASSWORD}),
            headers={"content-type": JSON},
            name="/api/v1/auth/login",
            catch_response=True,
        ) as r:
            if r.status_code == 200 and "csrf_token" in r.text:
                r.success()
            else:
                r.failure(f"sign-in: {describe(r)}")
        # The session cookie is in the client's cookie jar from here on.

    def get(self, path, name, expect=200):
        with self.client.get(path, name=name, catch_response=True) as r:
            if r.status_code == expect:
                r.success()
            else:
                r.failure(describe(r))
            return r

    @task(4)
    def overview_page(self):
        self.get("/plugin-monitoring", "/plugin-monitoring")
        for asset in ("uPlot.min.css", "app.css", "uPlot.iife.min.js", "app.js"):
            self.get(f"/plugin-monitoring/assets/{asset}", "/plugin-monitoring/assets/{file}")
        self.get("/api/v1/auth/me", "/api/v1/auth/me")
        self.get("/api/v1/overview?sort=name&order=asc&page=1&per_page=25&sparkline=true", "/api/v1/overview")
        self.get("/api/v1/alerts", "/api/v1/alerts")

    @task(4)
    def plugin_page(self):
        plugin = random.choice(PLUGINS)
        self.get(f"/api/v1/plugins/{plugin}", "/api/v1/plugins/{name}")
        self.get(f"/api/v1/plugins/{plugin}/headroom", "/api/v1/plugins/{name}/headroom")
        self.get(f"/api/v1/plugins/{plugin}/invocations?limit=50", "/api/v1/plugins/{name}/invocations")
        now = int(time.time())
        self.get(f"/api/v1/plugins/{plugin}/series?from={now - 900}&to={now}", "/api/v1/plugins/{name}/series")

    @task(1)
    def failures_only(self):
        plugin = random.choice(PLUGINS)
        self.get(
            f"/api/v1/plugins/{plugin}/invocations?limit=50&failures=true", "/api/v1/plugins/{name}/invocations"
        )

    @task(1)
    def longer_range(self):
        plugin = random.choice(PLUGINS)
        now = int(time.time())
        self.get(f"/api/v1/plugins/{plugin}/series?from={now - 86_400}&to={now}", "/api/v1/plugins/{name}/series")

    @task(1)
    def host(self):
        now = int(time.time())
        self.get(f"/api/v1/host?from={now - 3600}&to={now}", "/api/v1/host")


# An input over the plugins' 1 MiB `max_input_bytes` (but under the 4 MiB HTTP body limit).
OVERSIZED = body({"hook": "order.pricing", "input": {"order_id": "ord-huge", "notes": "x" * (1_200_000)}})


class Misbehaving(FastHttpUser):
    """The odd bad request, from a buggy or outdated client: each must get its documented 4xx."""

    weight = 1
    wait_time = between(0.5, 2.0)

    def expect(self, method, path, name, status, data=None, headers=HOST_HEADERS, code=None):
        with self.client.request(method, path, data=data, headers=headers, name=name, catch_response=True) as r:
            if r.status_code == status and (code is None or f'"code":"{code}"' in r.text):
                r.success()
            else:
                r.failure(f"expected {status}{' ' + code if code else ''}: {describe(r)}")

    @task(3)
    def malformed_json(self):
        self.expect(
            "POST",
            "/api/v1/hooks/order.pricing",
            "/api/v1/hooks/{hook} (malformed JSON)",
            400,
            data=b'{"input":{"order_id":"ord-1","items":[{"sku":"mandu","quantity":',
        )

    @task(1)
    def unknown_mode(self):
        order, _ = new_order("ord-mode")
        self.expect(
            "POST",
            "/api/v1/hooks/order.completed",
            "/api/v1/hooks/{hook} (unknown mode)",
            400,
            data=body({"mode": "broadcast", "input": order}),
        )

    @task(2)
    def unknown_plugin(self):
        order, _ = new_order("ord-unknown")
        self.expect(
            "POST",
            "/api/v1/plugins/pizza-oven/invoke",
            "/api/v1/plugins/{name}/invoke (unknown plugin)",
            404,
            data=body({"hook": "order.pricing", "input": order}),
        )

    @task(1)
    def oversized_input(self):
        self.expect(
            "POST",
            "/api/v1/plugins/promo-discount/invoke",
            "/api/v1/plugins/{name}/invoke (oversized input)",
            413,
            data=OVERSIZED,
        )

    @task(1)
    def unknown_field(self):
        order, _ = new_order("ord-field")
        self.expect(
            "POST",
            "/api/v1/plugins/loyalty-points/invoke",
            "/api/v1/plugins/{name}/invoke (unknown field)",
            400,
            data=body({"hook": "order.pricing", "payload": order}),
        )

    @task(1)
    def no_credentials(self):
        order, _ = new_order("ord-anon")
        self.expect(
            "POST",
            "/api/v1/hooks/order.pricing",
            "/api/v1/hooks/{hook} (no credentials)",
            401,
            data=body({"input": order}),
            headers={"content-type": JSON},
        )


# Every response time, per endpoint, for exact percentiles (see the module doc).
_samples = {}
_failures = Counter()
_task_errors = Counter()
_span = [math.inf, -math.inf]


@events.request.add_listener
def _record(request_type, name, response_time, exception, **_kwargs):
    entry = _samples.get((request_type, name))
    if entry is None:
        entry = _samples[(request_type, name)] = [[], 0]
    entry[0].append(response_time)
    if exception is not None:
        entry[1] += 1
        _failures[(request_type, name, str(exception)[:300])] += 1
    now = time.time()
    _span[0] = min(_span[0], now - response_time / 1000)
    _span[1] = max(_span[1], now)


@events.user_error.add_listener
def _task_error(user_instance, exception, tb, **_kwargs):
    # A task that raised is a broken scenario, not a server's failure: counted apart, and the check fails on it.
    _task_errors[f"{type(user_instance).__name__}: {exception!r}"[:300]] += 1


def _percentile(ordered, q):
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _summary(times, failures):
    ordered = sorted(times)
    return {
        "count": len(ordered),
        "failures": failures,
        "mean_ms": sum(ordered) / len(ordered),
        "p50_ms": _percentile(ordered, 50),
        "p95_ms": _percentile(ordered, 95),
        "p99_ms": _percentile(ordered, 99),
        "max_ms": ordered[-1],
    }


_users = {}
_environment = []


@events.init.add_listener
def _init(environment, **_kwargs):
    _environment.append(environment)


@events.spawning_complete.add_listener
def _spawned(user_count, **_kwargs):
    # By the time the test stops its users are gone: count them once all are running.
    _users.update(_environment[0].runner.user_classes_count)


@events.test_stop.add_listener
def _write(environment, **_kwargs):
    out = os.environ.get("PLUGWATCH_LOAD_OUT")
    if not out or not _samples:
        return
    endpoints = [
        {"method": method, "name": name, **_summary(times, failures)}
        for (method, name), (times, failures) in sorted(_samples.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    every = [t for times, _ in _samples.values() for t in times]
    report = {
        "started_at": _span[0],
        "ended_at": _span[1],
        "users": _users,
        "total": _summary(every, sum(f for _, f in _samples.values())),
        "endpoints": endpoints,
        "failures": [
            {"method": m, "name": n, "message": msg, "count": c} for (m, n, msg), c in _failures.most_common(20)
        ],
        "task_errors": [{"message": msg, "count": c} for msg, c in _task_errors.most_common(20)],
    }
    with open(os.path.join(out, "latencies.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
