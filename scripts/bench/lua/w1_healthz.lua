-- W1: GET /healthz on keep-alive connections (the same script drives nginx's
-- 2-byte file for the ceiling). A static request: wrk's cheapest client path.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
wrk.method = "GET"
wrk.path = "/healthz"
function init(args) bench_init(args) end
