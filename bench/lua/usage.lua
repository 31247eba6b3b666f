-- POST /usage (one event) or POST /usage/batch (`batch` events of one account), every event id new.
-- Args: API key, event id prefix, number of accounts ("bench-0000" ...), "hot" (all on bench-0000)
-- or "spread", batch size (0: single events).
dofile((os.getenv("BENCH_LUA") or "bench/lua") .. "/common.lua")

local models = { "openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "google/gemini-2.5-flash",
                 "deepseek/deepseek-chat" }
local counter = 0

function init(args)
   key, prefix, accounts, hot, batch = args[1], args[2], tonumber(args[3]), args[4] == "hot", tonumber(args[5])
   headers = { ["Content-Type"] = "application/json", ["X-API-Key"] = key }
   math.randomseed(os.time() + 7919 * (tid or 0))
end

local function event(account)
   counter = counter + 1
   return string.format(
      '{"event_id": "%s-%d-%d", "account_id": "bench-%04d", "model": "%s", "input_tokens": %d, "output_tokens": %d}',
      prefix, tid or 0, counter, account, models[counter % #models + 1], 200 + counter % 3000, 20 + counter % 700)
end

local function account()
   if hot then return 0 end
   return math.random(0, accounts - 1)
end

function request()
   if batch == 0 then
      return wrk.format("POST", "/usage", headers, event(account()))
   end
   local owner, items = account(), {}
   for i = 1, batch do items[i] = event(owner) end
   return wrk.format("POST", "/usage/batch", headers, '{"events": [' .. table.concat(items, ", ") .. "]}")
end
