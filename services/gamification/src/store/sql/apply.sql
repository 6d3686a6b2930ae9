-- One balance change of an account this transaction holds locked (pg.rs `lock`), in one round
-- trip: its ledger row unless the (user, reason, source) is there already, the account's new
-- values, and the badges it earns that the shopper has not got yet. The statement's snapshot is
-- taken after the lock was granted, so it sees every change committed under that lock before
-- it: a concurrent award of the same source is found here as `prior`, never as a unique
-- violation. Data-modifying CTEs do not see each other's rows, so the account and the badges
-- are written only when the ledger row is (they join its RETURNING).
-- Parameters: $1 user, $2 reason, $3 source, $4 delta, $5 at, $6 balance after, $7 lifetime,
-- $8 purchases, $9 reviews, $10 last login, $11 streak, $12 last check-in, $13 badges earned.
-- Answers the points the source earned before (NULL when this change was written), every
-- badge the shopper holds in award order, and those new with this change.
WITH prior AS (
    SELECT delta FROM gamification_ledger
    WHERE user_id = $1 AND reason = $2 AND source_id = $3
), ledger AS (
    INSERT INTO gamification_ledger (user_id, delta, reason, source_id, balance_after, created_at)
    SELECT $1, $4, $2, $3, $6, $5
    WHERE NOT EXISTS (SELECT FROM prior)
    RETURNING user_id
), account AS (
    UPDATE gamification_accounts AS a
    SET balance = $6, lifetime = $7, purchases = $8, reviews = $9, last_login = $10,
        streak = $11, last_check_in = $12, updated_at = now()
    FROM ledger
    WHERE a.user_id = ledger.user_id
), new_badges AS (
    INSERT INTO gamification_badges (user_id, badge, awarded_at)
    SELECT ledger.user_id, earned.badge, $5 FROM ledger, unnest($13::TEXT[]) AS earned (badge)
    ON CONFLICT DO NOTHING
    RETURNING badge, awarded_at
)
SELECT
    (SELECT delta FROM prior) AS prior,
    ARRAY(
        SELECT badge FROM (
            SELECT badge, awarded_at FROM gamification_badges WHERE user_id = $1
            UNION ALL
            SELECT badge, awarded_at FROM new_badges
        ) AS held
        ORDER BY awarded_at, badge
    ) AS badges,
    ARRAY(SELECT badge FROM new_badges) AS new_badges
