-- POST /auth/login (JSON), rotating over the seeded accounts BENCH_FIRST_USER..BENCH_USERS-1
-- (emails <BENCH_PREFIX><n>@example.com, one password), so the login rate limit of
-- 10 a minute per (address, email) is never what is measured; each thread takes its own users.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local counter = 0
local headers = { ["Content-Type"] = "application/json" }
local first, users, nthreads, prefix, password, offset

function init(args)
   first = tonumber(os.getenv("BENCH_FIRST_USER") or "3")
   users = tonumber(os.getenv("BENCH_USERS"))
   nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   offset = tonumber(os.getenv("BENCH_LOGIN_OFFSET") or "0")
   prefix = os.getenv("BENCH_PREFIX")
   password = os.getenv("BENCH_PASSWORD")
end

function request()
   local n = first + ((offset + counter * nthreads + tid) % (users - first))
   counter = counter + 1
   local body = string.format('{"email": "%s%d@example.com", "password": "%s"}', prefix, n, password)
   return wrk.format("POST", "/auth/login", headers, body)
end
