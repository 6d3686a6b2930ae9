-- Erases shopper $1 and keeps their books under the pseudonym $2, in one statement: the foreign
-- keys are checked at its end, when the ledger names the pseudonym and the shopper's account is
-- gone. The caller locked the shopper's account row first, so no award of theirs runs meanwhile
-- and this statement's snapshot holds every row of theirs.
-- The pseudonym's account carries the balance and the lifetime points (what the kept ledger adds
-- up to, which the books must still show) and nothing else: the counters, the streak and the
-- dates go with the shopper's row. The kept rows are marked ranked and pseudonymised, so no feed
-- round (nor a rebuild) puts them on a leaderboard.
-- Answers (accounts deleted, badges deleted, ledger rows kept, redemptions kept).
WITH account AS (
    SELECT balance, lifetime FROM gamification_accounts WHERE user_id = $1
), kept AS (
    INSERT INTO gamification_accounts AS a (user_id, balance, lifetime)
    SELECT $2, balance, lifetime FROM account
    ON CONFLICT (user_id) DO UPDATE
    SET balance = a.balance + EXCLUDED.balance,
        lifetime = a.lifetime + EXCLUDED.lifetime,
        updated_at = now()
), ledger AS (
    UPDATE gamification_ledger l
    SET user_id = $2, pseudonymised = true, ranked = true,
        -- A source the pseudonym holds already (the shopper came back after an erasure and
        -- earned the same day's login again) is told apart by the row id, so the award-once key
        -- stays unique.
        source_id = CASE
            WHEN EXISTS (
                SELECT 1 FROM gamification_ledger p
                WHERE p.user_id = $2 AND p.reason = l.reason AND p.source_id = l.source_id
            ) THEN l.source_id || '#' || l.id
            ELSE l.source_id
        END
    WHERE l.user_id = $1
    RETURNING 1
), redemptions AS (
    UPDATE gamification_reward_redemptions SET user_id = $2 WHERE user_id = $1 RETURNING 1
), badges AS (
    DELETE FROM gamification_badges WHERE user_id = $1 RETURNING 1
), accounts AS (
    DELETE FROM gamification_accounts WHERE user_id = $1 RETURNING 1
)
SELECT (SELECT count(*) FROM accounts),
       (SELECT count(*) FROM badges),
       (SELECT count(*) FROM ledger),
       (SELECT count(*) FROM redemptions)
