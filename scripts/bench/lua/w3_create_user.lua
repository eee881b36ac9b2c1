-- W3: POST /api/v1/users with a unique email on every request, across threads
-- and runs: <nonce>-t<thread>-<counter>@example.com.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
local headers, n = {}, 0
function init(args)
  bench_init(args)
  headers["Host"] = wrk.headers["Host"]
  headers["Content-Type"] = "application/json"
  headers["Accept"] = "application/json"
end
function request()
  n = n + 1
  local body = string.format('{"name":"Bench User %d","email":"b%s-t%d-%d@example.com"}', n, nonce, tid, n)
  return wrk.format("POST", "/api/v1/users", headers, body)
end
