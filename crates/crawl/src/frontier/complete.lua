-- Completes a batch of claimed URLs, atomically.
-- ARGV: prefix, n, then per URL: entry, stats, link count, that many link entries.
-- stats are "field=delta" pairs for the `counts` hash, added only the first time the URL is
-- completed (a URL fetched again because its first lease expired counts once); its links not
-- seen before are queued. Returns, per URL, 1 if it was counted.
local p = ARGV[1]
local n = tonumber(ARGV[2])
local counts = p .. 'counts'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function add_host(host)
  if not redis.call('ZSCORE', p .. 'hosts', host) then
    local next_ms = tonumber(redis.call('HGET', p .. 'next', host) or '0')
    redis.call('ZADD', p .. 'hosts', next_ms, host)
  end
end

local counted = {}
local sums = {}
local released = {}
local any_first = false
local queued = 0
local new_hosts = {}
local i = 3
for k = 1, n do
  local e = ARGV[i]
  local stats = ARGV[i + 1]
  local links = tonumber(ARGV[i + 2])
  i = i + 3
  local host, url = string.match(e, '^%d+ (%S+) (.*)$')
  if redis.call('ZREM', p .. 'leases', e) == 1 then
    released[host] = (released[host] or 0) + 1
  end
  local first = redis.call('SADD', p .. 'done', url)
  if first == 1 then
    any_first = true
    for field, delta in string.gmatch(stats, '(%S+)=(%d+)') do
      sums[field] = (sums[field] or 0) + tonumber(delta)
    end
  end
  -- Links are queued from every completion (a process sends each link once, so the links of a
  -- second completion of a URL may be the only copy).
  for j = i, i + links - 1 do
    local le = ARGV[j]
    local lhost, lurl = string.match(le, '^%d+ (%S+) (.*)$')
    if redis.call('SADD', p .. 'seen', lurl) == 1 then
      redis.call('RPUSH', p .. 'q:' .. lhost, le)
      queued = queued + 1
      new_hosts[lhost] = true
    end
  end
  i = i + links
  counted[k] = first
end
-- One command per counter and per host for the whole batch.
for host, n in pairs(released) do
  redis.call('HINCRBY', p .. 'inflight', host, -n)
end
for field, delta in pairs(sums) do
  redis.call('HINCRBY', counts, field, delta)
end
if queued > 0 then
  redis.call('HINCRBY', counts, 'queued', queued)
end
for host, _ in pairs(new_hosts) do
  add_host(host)
end
if any_first then
  redis.call('HSET', counts, 'last_ms', now)
end
return counted
