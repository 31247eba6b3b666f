-- POST /usage (one event) or POST /usage/batch (`batch` events of one account), every event id new.
-- Args: API key, event id prefix, number of accounts ("bench-0000" ...), "hot" (all on bench-0000)
-- or "spread", batch size (0: single events).
dofile((os.getenv("BENCH_LUA") or "bench/lua") .. "/common.lua")

-- Model strings as provider responses carry them (dated snapshots, wrapped names, a router path), and every
-- other event reports the provider's usage object instead of token fields (bench/raw.py sends the same).
local models = { "gpt-4o-2024-08-06", "openai/gpt-4o-mini", "claude-sonnet-4-5-20250929", "models/gemini-2.5-flash",
                 "deepseek/deepseek-chat" }
local usages = {
   '"usage": {"prompt_tokens": %d, "completion_tokens": %d, "prompt_tokens_details": {"cached_tokens": 0}}',
   '"usage": {"prompt_tokens": %d, "completion_tokens": %d}',
   '"usage": {"input_tokens": %d, "output_tokens": %d, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}',
   '"usage": {"promptTokenCount": %d, "candidatesTokenCount": %d, "totalTokenCount": 0}',
   '"usage": {"prompt_tokens": %d, "completion_tokens": %d}',
}
local counter = 0

function init(args)
   key, prefix, accounts, hot, batch = args[1], args[2], tonumber(args[3]), args[4] == "hot", tonumber(args[5])
   headers = { ["Content-Type"] = "application/json", ["X-API-Key"] = key }
   math.randomseed(os.time() + 7919 * (tid or 0))
end

local function event(account)
   counter = counter + 1
   local index = counter % #models + 1
   local tokens
   if counter % 2 == 0 then
      tokens = string.format('"input_tokens": %d, "output_tokens": %d', 200 + counter % 3000, 20 + counter % 700)
   else
      tokens = string.format(usages[index], 200 + counter % 3000, 20 + counter % 700)
   end
   return string.format('{"event_id": "%s-%d-%d", "account_id": "bench-%04d", "model": "%s", %s}',
      prefix, tid or 0, counter, account, models[index], tokens)
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
