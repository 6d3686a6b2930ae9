-- A group commit's writes (pg/awards.rs), in one round trip, under the account locks its
-- transaction holds: the ledger rows in the awards' order (ids follow it, as the feeder and
-- the history read them), each changed account's final values, and the badges new with the
-- batch. Every row was decided in Rust from what this transaction read under those locks, so
-- none of them can meet a row another transaction wrote.
-- Parameters: ledger $1 user, $2 delta, $3 reason, $4 source, $5 balance after, $6 at;
-- accounts $7 user, $8 balance, $9 lifetime, $10 purchases, $11 reviews, $12 last login,
-- $13 streak, $14 last check-in; badges $15 user, $16 badge, $17 awarded at.
WITH ledger AS (
    INSERT INTO gamification_ledger (user_id, delta, reason, source_id, balance_after, created_at)
    SELECT user_id, delta, reason, source_id, balance_after, created_at
    FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TIMESTAMPTZ[])
        WITH ORDINALITY AS r (user_id, delta, reason, source_id, balance_after, created_at, n)
    ORDER BY n
    RETURNING 1
), account AS (
    UPDATE gamification_accounts AS a
    SET balance = n.balance, lifetime = n.lifetime, purchases = n.purchases,
        reviews = n.reviews, last_login = n.last_login, streak = n.streak,
        last_check_in = n.last_check_in, updated_at = now()
    FROM unnest($7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::INT[], $11::INT[], $12::DATE[],
                $13::INT[], $14::DATE[])
        AS n (user_id, balance, lifetime, purchases, reviews, last_login, streak, last_check_in)
    -- The ANY lets the planner reach the accounts through their primary key before the join.
    WHERE a.user_id = n.user_id AND a.user_id = ANY($7::TEXT[])
    RETURNING 1
), badges AS (
    INSERT INTO gamification_badges (user_id, badge, awarded_at)
    SELECT * FROM unnest($15::TEXT[], $16::TEXT[], $17::TIMESTAMPTZ[])
    RETURNING 1
)
SELECT (SELECT count(*) FROM ledger) AS ledger,
       (SELECT count(*) FROM account) AS accounts,
       (SELECT count(*) FROM badges) AS badges
