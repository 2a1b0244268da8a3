-- The soak: a weighted mix of every benchmarked request, picked at random per request.
-- Tokens: BENCH_TOKEN_TYPICAL, BENCH_TOKEN_HEAVY, BENCH_TOKEN_WRITER; list paths in
-- BENCH_LIST_PATHS (space-separated); BENCH_TYPICAL_ID for GET /todos/{id}; BENCH_IDS (the
-- writer's todos) for PATCH; login rotates over the accounts like login.lua.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local slots = {}
local function add(weight, entry)
   for _ = 1, weight do
      slots[#slots + 1] = entry
   end
end

local function bearer(token, json)
   local h = { ["Authorization"] = "Bearer " .. token }
   if json then
      h["Content-Type"] = "application/json"
   end
   return h
end

function init(args)
   math.randomseed(os.time() + 7919 * tid)
   local typical = os.getenv("BENCH_TOKEN_TYPICAL")
   local heavy = os.getenv("BENCH_TOKEN_HEAVY")
   local writer = os.getenv("BENCH_TOKEN_WRITER")
   local paths = {}
   for path in string.gmatch(os.getenv("BENCH_LIST_PATHS"), "%S+") do
      paths[#paths + 1] = path
   end
   -- weights are per 1000 requests
   for i, path in ipairs(paths) do
      add(i == 1 and 200 or 80, wrk.format("GET", path, bearer(typical)))   -- 440: typical lists
      add(i == 1 and 30 or 20, wrk.format("GET", path, bearer(heavy)))      -- 90: heavy lists
   end
   add(150, wrk.format("GET", "/todos/" .. os.getenv("BENCH_TYPICAL_ID"), bearer(typical)))
   add(80, wrk.format("GET", "/stats", bearer(typical)))
   add(8, wrk.format("GET", "/stats", bearer(heavy)))
   add(50, wrk.format("GET", "/health", {}))
   add(50, wrk.format("POST", "/todos", bearer(writer, true),
      '{"title": "bench soak", "description": "created by the soak", "priority": 3, "tags": ["work", "bench"]}'))

   local ids = {}
   for id in string.gmatch(os.getenv("BENCH_IDS"), "%d+") do
      ids[#ids + 1] = id
   end
   local patches = 0
   local writer_json = bearer(writer, true)
   add(130, function()
      patches = patches + 1
      local id = ids[math.random(#ids)]
      local body = string.format('{"priority": %d, "done": %s}', math.random(5), patches % 2 == 0 and "true" or "false")
      return wrk.format("PATCH", "/todos/" .. id, writer_json, body)
   end)

   local logins = 0
   local users = tonumber(os.getenv("BENCH_USERS"))
   local first = tonumber(os.getenv("BENCH_FIRST_USER") or "3")
   local prefix, password = os.getenv("BENCH_PREFIX"), os.getenv("BENCH_PASSWORD")
   local json = { ["Content-Type"] = "application/json" }
   add(2, function()
      logins = logins + 1
      local n = first + ((math.floor(users / 2) + logins * 2 + tid) % (users - first))
      return wrk.format("POST", "/auth/login", json,
         string.format('{"email": "%s%d@example.com", "password": "%s"}', prefix, n, password))
   end)
end

function request()
   local entry = slots[math.random(#slots)]
   if type(entry) == "function" then
      return entry()
   end
   return entry
end
