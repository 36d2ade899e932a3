-- Completes a batch of claimed URLs, atomically.
-- ARGV: prefix, n, the batch's summed stats, the number of hosts H, H pairs (host, count), then
-- the n entries grouped by host in that order, the n URLs and the n stats of the same URLs;
-- then the number of link hosts and per host: host, link count m, m URLs, m entries.
-- Stats are "field=delta" pairs for the `counts` hash. A URL's stats count only the first time
-- it is completed (a URL fetched again because its first lease expired counts once): the summed
-- stats are added less those of URLs completed before. Links not seen before are queued.
-- Runs of ARGV go to Redis as they are (unpack of a slice), so Redis is called a fixed number of
-- times per batch and per host, and Lua looks at each URL only to check a reply.
-- Returns how many URLs were counted.
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
local host_count = tonumber(ARGV[4])
local entry_at = 5 + host_count * 2
local url_at = entry_at + n
local stats_at = url_at + n
local at = entry_at
for h = 1, host_count do
  local host = ARGV[3 + h * 2]
  local count = tonumber(ARGV[4 + h * 2])
  local released = redis.call('ZREM', p .. 'leases', unpack(ARGV, at, at + count - 1))
  if released > 0 then
    redis.call('HINCRBY', p .. 'inflight', host, -released)
  end
  at = at + count
end

local before = redis.call('SMISMEMBER', p .. 'done', unpack(ARGV, url_at, url_at + n - 1))
local added = redis.call('SADD', p .. 'done', unpack(ARGV, url_at, url_at + n - 1))
local counted = added
if added < n then
  -- Some URLs were completed before, or twice in this batch: count each once.
  counted = 0
  local in_batch = {}
  for k = 1, n do
    local url = ARGV[url_at + k - 1]
    if before[k] == 0 and not in_batch[url] then
      in_batch[url] = true
      counted = counted + 1
    else
      for field, delta in string.gmatch(ARGV[stats_at + k - 1], '(%S+)=(%d+)') do
        sums[field] = (sums[field] or 0) - tonumber(delta)
      end
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
local i = stats_at + n
local link_hosts = tonumber(ARGV[i])
i = i + 1
for _ = 1, link_hosts do
  local host = ARGV[i]
  local m = tonumber(ARGV[i + 1])
  local urls_at = i + 2
  local entries_at = urls_at + m
  i = entries_at + m
  local seen = redis.call('SMISMEMBER', p .. 'seen', unpack(ARGV, urls_at, urls_at + m - 1))
  local all_new = true
  for j = 1, m do
    if seen[j] ~= 0 then
      all_new = false
      break
    end
  end
  local fresh = 0
  if all_new
      and redis.call('SADD', p .. 'seen', unpack(ARGV, urls_at, urls_at + m - 1)) == m then
    redis.call('RPUSH', p .. 'q:' .. host, unpack(ARGV, entries_at, entries_at + m - 1))
    fresh = m
  else
    -- Some seen before (or repeated in this batch): queue the others, once each.
    local new_urls, new_entries, taken = {}, {}, {}
    for j = 1, m do
      local url = ARGV[urls_at + j - 1]
      if seen[j] == 0 and not taken[url] then
        taken[url] = true
        new_urls[#new_urls + 1] = url
        new_entries[#new_entries + 1] = ARGV[entries_at + j - 1]
      end
    end
    fresh = #new_urls
    if fresh > 0 then
      redis.call('SADD', p .. 'seen', unpack(new_urls))
      redis.call('RPUSH', p .. 'q:' .. host, unpack(new_entries))
    end
  end
  if fresh > 0 then
    queued = queued + fresh
    add_host(host)
  end
end

-- One command per counter for the whole batch.
for field, delta in pairs(sums) do
  if delta ~= 0 then
    redis.call('HINCRBY', counts, field, delta)
  end
end
if queued > 0 then
  redis.call('HINCRBY', counts, 'queued', queued)
end
if counted > 0 then
  redis.call('HSET', counts, 'last_ms', now)
end
return counted
