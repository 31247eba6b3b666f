-- GET with fixed headers (given with -H); only the figures are scripted.
dofile((os.getenv("BENCH_LUA") or "bench/lua") .. "/common.lua")
