-- The shared robots.txt of one origin. ARGV: key, lock_ms.
-- Returns {1, body} when known, {2, ''} when the caller must fetch it (it holds the lock for
-- lock_ms), {0, ''} when another process is fetching it.
local body = redis.call('GET', ARGV[1])
if body then
  return {1, body}
end
if redis.call('SET', ARGV[1] .. ':lock', '1', 'NX', 'PX', ARGV[2]) then
  return {2, ''}
end
return {0, ''}
