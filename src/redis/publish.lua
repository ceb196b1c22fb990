-- Publishes one event to the cluster's log, as one step nothing can come
-- between. Sent by src/redis/log.rs (EVALSHA, or EVAL when Redis has not
-- cached it yet); the comments there say why it is a script.
--
-- KEYS[1]  the counter: the last id handed out (a string holding a number)
-- KEYS[2]  the stream of events, one entry per id, entry id "<id>-0"
-- KEYS[3]  the epoch: a random value that lives as long as the log's data
-- ARGV[1]  how many entries the stream keeps (MAXLEN)
-- ARGV[2]  "=" to trim to exactly that many, "~" to let Redis trim in
--          whole blocks (cheaper; the stream may hold a few more)
-- ARGV[3]  a fresh random value, taken as the epoch if there is none
-- ARGV[4]  the event's data
-- ARGV[5]  the event's name; absent for an unnamed event
--
-- Returns the new id, an integer.

local id = redis.call('INCR', KEYS[1])

-- The first event after the data was lost (or the first ever) starts a new
-- epoch; while the epoch exists this changes nothing.
redis.call('SET', KEYS[3], ARGV[3], 'NX')

-- Lua 5.1 numbers are doubles: '%d' prints every id up to 2^53 exactly,
-- where tostring() would switch to 1e+14 notation.
local text = string.format('%d', id)
local entry = text .. '-0'

if ARGV[5] then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], ARGV[1], entry,
    'id', text, 'name', ARGV[5], 'data', ARGV[4])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], ARGV[1], entry,
    'id', text, 'data', ARGV[4])
end

return id
