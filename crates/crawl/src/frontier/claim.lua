-- Claims up to ARGV[2] URLs for one process, atomically.
-- ARGV: prefix, want, per_host (0: no limit), delay_ms, lease_ms, budget (0: none)
-- Returns {entries, queued, leased, finished, now_ms}.
-- An entry is "depth host url"; a lease is the entry in the `leases` sorted set, scored by
-- its expiry. Expired leases go back to the front of their host's queue first.
local p = ARGV[1]
local want = tonumber(ARGV[2])
local per_host = tonumber(ARGV[3])
local delay = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local budget = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts = p .. 'counts'
-- A lease's score, formatted once (not once per lease).
local expiry = tostring(now + lease)

local function add_host(host)
  if not redis.call('ZSCORE', p .. 'hosts', host) then
    local next_ms = tonumber(redis.call('HGET', p .. 'next', host) or '0')
    redis.call('ZADD', p .. 'hosts', next_ms, host)
  end
end

local expired = redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', now, 'LIMIT', 0, 512)
for _, e in ipairs(expired) do
  redis.call('ZREM', p .. 'leases', e)
  local host, url = string.match(e, '^%d+ (%S+) (.*)$')
  redis.call('HINCRBY', p .. 'inflight', host, -1)
  if redis.call('SISMEMBER', p .. 'done', url) == 0 then
    redis.call('LPUSH', p .. 'q:' .. host, e)
    redis.call('HINCRBY', counts, 'queued', 1)
    redis.call('HINCRBY', counts, 'requeued', 1)
    add_host(host)
  end
end

local out = {}
local popped = 0
local started = tonumber(redis.call('HGET', counts, 'started') or '0')
if want > 0 and (budget == 0 or started < budget) then
  local hosts = redis.call('ZRANGEBYSCORE', p .. 'hosts', '-inf', now, 'LIMIT', 0, 64)
  for _, host in ipairs(hosts) do
    if #out >= want or (budget > 0 and started >= budget) then break end
    local q = p .. 'q:' .. host
    local inflight = tonumber(redis.call('HGET', p .. 'inflight', host) or '0')
    local took = 0
    -- Whole runs of the host's queue at once (LPOP with a count, one SMISMEMBER and one ZADD
    -- for the run), again only when some of the run had been completed meanwhile.
    while true do
      local room = want - #out
      if per_host > 0 then room = math.min(room, per_host - inflight) end
      if budget > 0 then room = math.min(room, budget - started) end
      if delay > 0 then room = math.min(room, 1 - took) end
      if room <= 0 then break end
      local run = redis.call('LPOP', q, room)
      if not run then break end
      popped = popped + #run
      local urls = {}
      for k, e in ipairs(run) do
        urls[k] = string.match(e, '^%d+ %S+ (.*)$')
      end
      local done = redis.call('SMISMEMBER', p .. 'done', unpack(urls))
      local lease_args = {}
      for k, e in ipairs(run) do
        if done[k] == 0 then
          lease_args[#lease_args + 1] = expiry
          lease_args[#lease_args + 1] = e
          out[#out + 1] = e
        end
      end
      if #lease_args > 0 then
        redis.call('ZADD', p .. 'leases', unpack(lease_args))
        local n = #lease_args / 2
        inflight = inflight + n
        took = took + n
        started = started + n
      end
      if #run < room then break end
    end
    if took > 0 then
      redis.call('HSET', p .. 'inflight', host, inflight)
    end
    if redis.call('LLEN', q) == 0 then
      redis.call('ZREM', p .. 'hosts', host)
    elseif took > 0 and delay > 0 then
      redis.call('ZADD', p .. 'hosts', now + delay, host)
    end
    if took > 0 and delay > 0 then
      redis.call('HSET', p .. 'next', host, now + delay)
    end
  end
  if popped > 0 then
    redis.call('HINCRBY', counts, 'queued', -popped)
  end
  if #out > 0 then
    redis.call('HSET', counts, 'started', started)
    redis.call('HSETNX', counts, 'first_ms', now)
  end
end

local queued = tonumber(redis.call('HGET', counts, 'queued') or '0')
local leased = redis.call('ZCARD', p .. 'leases')
local spent = budget > 0 and started >= budget
local finished = 0
if #out == 0 and leased == 0 and (queued == 0 or spent) then
  finished = 1
  redis.call('HSETNX', counts, 'finished_ms', now)
end
return {out, queued, leased, finished, now}
