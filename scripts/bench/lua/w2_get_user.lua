-- W2: GET /api/v1/users/{id}, id uniformly random in 1..10000 (the seeded rows).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
local headers = {}
function init(args)
  bench_init(args)
  headers["Host"] = wrk.headers["Host"]
  headers["Accept"] = "application/json"
end
function request()
  return wrk.format("GET", "/api/v1/users/" .. math.random(1, 10000), headers)
end
