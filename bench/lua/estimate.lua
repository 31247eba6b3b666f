-- POST /estimate: one model, fixed token counts.  Args: API key.
dofile((os.getenv("BENCH_LUA") or "bench/lua") .. "/common.lua")

function init(args)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["X-API-Key"] = args[1]
   wrk.body = '{"model": "openai/gpt-4o", "input_tokens": 1200, "output_tokens": 300}'
end
