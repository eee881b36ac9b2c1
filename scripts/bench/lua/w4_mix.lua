-- W4: 90 % W2 (GET a random seeded user), 10 % W3 (POST a unique user),
-- exactly one POST in every ten requests per thread.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
local get_headers, post_headers, n = {}, {}, 0
function init(args)
  bench_init(args)
  get_headers["Host"] = wrk.headers["Host"]
  get_headers["Accept"] = "application/json"
  post_headers["Host"] = wrk.headers["Host"]
  post_headers["Accept"] = "application/json"
  post_headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  if n % 10 == 0 then
    local body = string.format('{"name":"Bench User %d","email":"m%s-t%d-%d@example.com"}', n, nonce, tid, n)
    return wrk.format("POST", "/api/v1/users", post_headers, body)
  end
  return wrk.format("GET", "/api/v1/users/" .. math.random(1, 10000), get_headers)
end
