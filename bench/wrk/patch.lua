-- PATCH /todos/{id} over the caller's todos (BENCH_IDS, comma-separated), as BENCH_TOKEN.
-- Each wrk thread owns its own share of the ids and alternates two bodies per id, so every
-- PATCH really changes the todo and no two connections of different threads fight over a row.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local ids, mine, counter = {}, {}, 0
local headers = {
   ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
   ["Content-Type"] = "application/json",
}
local bodies = {
   '{"title": "bench patch a", "priority": 2}',
   '{"title": "bench patch b", "priority": 4}',
}

function init(args)
   local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   for id in string.gmatch(os.getenv("BENCH_IDS"), "%d+") do
      ids[#ids + 1] = id
   end
   for i, id in ipairs(ids) do
      if (i - 1) % nthreads == tid then
         mine[#mine + 1] = id
      end
   end
   if #mine == 0 then
      mine = ids
   end
end

function request()
   local id = mine[(counter % #mine) + 1]
   local body = bodies[(math.floor(counter / #mine) % 2) + 1]
   counter = counter + 1
   return wrk.format("PATCH", "/todos/" .. id, headers, body)
end
