-- Dead letters are listed newest first by (received_at, id) and paged by that key, filtered by reason,
-- by site, by time, and counted by site and reason (peakwatch/store/dead_letters.py). Each index ends
-- in (received_at, id), so a page is one index range read backwards from the cursor, and includes the
-- columns the counts group by, so counting a time range reads the index only. They replace the two
-- indexes of 001/002, which lacked the id (a page then sorted every letter of the same millisecond).
CREATE INDEX IF NOT EXISTS dead_letters_time_key ON dead_letters (received_at, id) INCLUDE (site_id, reason);
CREATE INDEX IF NOT EXISTS dead_letters_reason_key ON dead_letters (reason, received_at, id) INCLUDE (site_id);
CREATE INDEX IF NOT EXISTS dead_letters_site_key ON dead_letters (site_id, received_at, id) INCLUDE (reason);
DROP INDEX IF EXISTS dead_letters_received_at;
DROP INDEX IF EXISTS dead_letters_reason;
