-- Completes a batch of claimed URLs, atomically.
-- ARGV: prefix, n, the batch's summed stats, then per URL: entry, url, host, its own stats;
-- then the number of link hosts and per host: host, link count, that many (url, entry) pairs.
-- Stats are "field=delta" pairs for the `counts` hash. A URL's stats count only the first time
-- it is completed (a URL fetched again because its first lease expired counts once): the summed
-- stats are added less those of URLs completed before. Links not seen before are queued.
-- Redis is called a fixed number of times per batch and per link host, with many members per
-- call (ZREM, SMISMEMBER, SADD, RPUSH), not per URL. Returns, per URL, 1 if it was counted.
local p = ARGV[1]
local n = tonumber(ARGV[2])
local counts = p .. 'counts'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local sums = {}
for field, delta in string.gmatch(ARGV[3], '(%S+)=(%d+)') do
  sums[field] = tonumber(delta)
end

-- Leases are dropped host by host (ZREM says how many of a host's were still held).
local urls, hosts, entries_of = {}, {}, {}
for k = 1, n do
  local i = 4 + (k - 1) * 4
  urls[k] = ARGV[i + 1]
  local host = ARGV[i + 2]
  local entries = entries_of[host]
  if not entries then
    entries = {}
    entries_of[host] = entries
    hosts[#hosts + 1] = host
  end
  entries[#entries + 1] = ARGV[i]
end
local released = {}
for _, host in ipairs(hosts) do
  released[host] = redis.call('ZREM', p .. 'leases', unpack(entries_of[host]))
end

local before = redis.call('SMISMEMBER', p .. 'done', unpack(urls))
redis.call('SADD', p .. 'done', unpack(urls))

local counted = {}
local in_batch = {}
local any_first = false
for k = 1, n do
  local i = 4 + (k - 1) * 4
  if before[k] == 0 and not in_batch[urls[k]] then
    in_batch[urls[k]] = true
    counted[k] = 1
    any_first = true
  else
    counted[k] = 0
    for field, delta in string.gmatch(ARGV[i + 3], '(%S+)=(%d+)') do
      sums[field] = (sums[field] or 0) - tonumber(delta)
    end
  end
end

local function add_host(host)
  if not redis.call('ZSCORE', p .. 'hosts', host) then
    local next_ms = tonumber(redis.call('HGET', p .. 'next', host) or '0')
    redis.call('ZADD', p .. 'hosts', next_ms, host)
  end
end

-- Links are queued from every completion (a process sends each link once, so the links of a
-- second completion of a URL may be the only copy).
local queued = 0
local i = 4 + n * 4
local link_hosts = tonumber(ARGV[i])
i = i + 1
for _ = 1, link_hosts do
  local host = ARGV[i]
  local m = tonumber(ARGV[i + 1])
  i = i + 2
  local link_urls = {}
  for j = 1, m do
    link_urls[j] = ARGV[i + (j - 1) * 2]
  end
  local seen = redis.call('SMISMEMBER', p .. 'seen', unpack(link_urls))
  local new_urls, new_entries, fresh = {}, {}, {}
  for j = 1, m do
    local url = link_urls[j]
    if seen[j] == 0 and not fresh[url] then
      fresh[url] = true
      new_urls[#new_urls + 1] = url
      new_entries[#new_entries + 1] = ARGV[i + (j - 1) * 2 + 1]
    end
  end
  i = i + m * 2
  if #new_urls > 0 then
    redis.call('SADD', p .. 'seen', unpack(new_urls))
    redis.call('RPUSH', p .. 'q:' .. host, unpack(new_entries))
    queued = queued + #new_urls
    add_host(host)
  end
end

-- One command per counter and per host for the whole batch.
for host, released_here in pairs(released) do
  if released_here > 0 then
    redis.call('HINCRBY', p .. 'inflight', host, -released_here)
  end
end
for field, delta in pairs(sums) do
  if delta ~= 0 then
    redis.call('HINCRBY', counts, field, delta)
  end
end
if queued > 0 then
  redis.call('HINCRBY', counts, 'queued', queued)
end
if any_first then
  redis.call('HSET', counts, 'last_ms', now)
end
return counted
