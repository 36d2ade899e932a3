-- Queues the entries ("depth host url") whose URL the crawl has not seen. ARGV: prefix, entries.
-- Returns how many were new. A new URL makes a finished crawl run again.
local p = ARGV[1]
local counts = p .. 'counts'
local new = 0
for i = 2, #ARGV do
  local e = ARGV[i]
  local host, url = string.match(e, '^%d+ (%S+) (.*)$')
  if redis.call('SADD', p .. 'seen', url) == 1 then
    redis.call('RPUSH', p .. 'q:' .. host, e)
    redis.call('HINCRBY', counts, 'queued', 1)
    if not redis.call('ZSCORE', p .. 'hosts', host) then
      redis.call('ZADD', p .. 'hosts', tonumber(redis.call('HGET', p .. 'next', host) or '0'), host)
    end
    new = new + 1
  end
end
if new > 0 then
  redis.call('HDEL', counts, 'finished_ms')
end
return new
