-- meter_state (one row per meter) and meter_intervals (one per meter and window) are updated by every
-- store transaction that holds a reading of the meter: at 100k meters about once per reading. None of
-- the updated columns is indexed, so PostgreSQL can update in place (HOT: no new index entries, the
-- old version pruned on its page) if the page has room for the new version; at the default
-- fillfactor of 100 it never has, and every update also wrote to each index and bloated the table
-- (bench.scaling at 100k meters: 0.5 % of meter_state updates HOT, 182 MB for 100k rows). New pages
-- keep the free room; the tables' existing pages get it at their next rewrite (VACUUM FULL).
ALTER TABLE meter_state SET (fillfactor = 50);
ALTER TABLE meter_intervals SET (fillfactor = 70);
