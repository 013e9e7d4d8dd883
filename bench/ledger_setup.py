"""Prepares a cardcrm server for the ledger benchmark: signs in, creates a stored-value
product and a store, issues CARDS cards to as many customers and tops each up, then creates
an API token for the till and writes two wrk scripts: checkout.lua (one basket per request,
paid partly from stored value, each with its own Idempotency-Key) and balance.lua (balance
reads of random cards). Prints the token.

    python3 bench/ledger_setup.py BASE USER PASSWORD CARDS OUT_DIR
"""

import concurrent.futures
import http.cookiejar
import json
import sys
import urllib.request

base, username, password, cards_wanted, out_dir = sys.argv[1:6]
cards_wanted = int(cards_wanted)
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
csrf = ""


def call(method, path, body=None, headers=None):
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-csrf-token": csrf, **(headers or {})},
        method=method,
    )
    with opener.open(request) as response:
        return json.load(response)


csrf = call("POST", "/api/v1/auth/login", {"username": username, "password": password})["csrf_token"]
call("POST", "/api/v1/card-products", {
    "code": "BENCH", "name": "bench 储值卡", "kind": "stored_value",
    "bonus_rules": [{"min_top_up_minor": 100000, "bonus_minor": 10000}],
    "top_up_max_minor": 100000000, "balance_max_minor": 500000000, "spend_max_minor": 5000000,
})
store = call("POST", "/api/v1/stores", {"code": "BENCH01", "name": "bench 门店"})["id"]


def issue(index):
    customer = call("POST", "/api/v1/customers", {"name": f"压测{index}", "phone": f"137{index:08d}"})
    card = call("POST", "/api/v1/cards", {"customer_id": customer["customer"]["id"], "product": "BENCH", "activate": True})
    card_id = card["card"]["id"]
    call("POST", f"/api/v1/cards/{card_id}/top-ups",
         {"amount_minor": 100000000, "payment_method": "cash", "store_id": store},
         {"idempotency-key": f"bench-seed-{card_id}"})
    return card_id


with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
    card_ids = list(pool.map(issue, range(cards_wanted)))

token = call("POST", "/api/v1/tokens", {
    "name": "bench-till", "scopes": ["card.read", "value.load", "value.spend", "value.refund"], "store_id": store,
})["token"]

ids = ",".join(str(card_id) for card_id in card_ids)
run_id = __import__("os").getpid()
with open(f"{out_dir}/checkout.lua", "w") as lua:
    lua.write(f"""
local cards = {{{ids}}}
local counter = 0
local thread_id = 0
local threads = {{}}
function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end
-- `wrk … -- PAUSE_MS`: each connection waits this long between its requests, to measure
-- latency at a chosen rate instead of at saturation.
local pause_ms = 0
local run = 0
function init(args)
  math.randomseed(os.time() * 7919 + thread_id)
  -- Keys differ between runs of the same script: a repeated key would be a replay.
  run = os.time() .. "-" .. math.random(1000000000)
  if args[1] then pause_ms = tonumber(args[1]) end
end
function delay()
  return pause_ms
end
request = function()
  counter = counter + 1
  local card = cards[math.random(#cards)]
  local body = '{{"card_id":' .. card .. ',"store_id":{store},"lines":[{{"amount_minor":1200,"category":"饮品","name":"拿铁"}},{{"amount_minor":300,"category":"甜点"}}],"stored_value_minor":1000,"external_method":"wechat_pay"}}'
  -- wrk.format drops the -H headers when given its own table: copy them in.
  local headers = {{}}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["content-type"] = "application/json"
  headers["idempotency-key"] = "bench-" .. run .. "-" .. thread_id .. "-" .. counter
  return wrk.format("POST", "/api/v1/checkouts", headers, body)
end
""")
with open(f"{out_dir}/balance.lua", "w") as lua:
    lua.write(f"""
local cards = {{{ids}}}
request = function()
  return wrk.format("GET", "/api/v1/cards/" .. cards[math.random(#cards)] .. "/balance")
end
""")
print(token)
