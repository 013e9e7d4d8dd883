"""Signs in to a cardcrm server, creates a read-only API token, and writes a wrk script that
looks customers up by phones drawn from the benchmark's customer file. Prints the token."""

import csv
import http.cookiejar
import json
import random
import sys
import urllib.request

base, username, password, customers_csv, lua_path = sys.argv[1:6]
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def post(path, body, headers=None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
        method="POST",
    )
    with opener.open(request) as response:
        return json.load(response)


login = post("/api/v1/auth/login", {"username": username, "password": password})
token = post(
    "/api/v1/tokens",
    {"name": "bench-lookups", "scopes": ["customer.read"]},
    {"x-csrf-token": login["csrf_token"]},
)["token"]

random.seed(20261123)
phones = []
with open(customers_csv, encoding="utf-8") as handle:
    for index, row in enumerate(csv.DictReader(handle)):
        if row["phone"] and index % 97 == 0:
            phones.append(row["phone"])
random.shuffle(phones)
phones = phones[:5000]
with open(lua_path, "w", encoding="utf-8") as lua:
    lua.write("phones = {" + ",".join(f'"{phone}"' for phone in phones) + "}\n")
    lua.write(
        "counter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        '  return wrk.format("GET", "/api/v1/customers?phone=" .. phones[(counter % #phones) + 1])\n'
        "end\n"
    )
print(token)
