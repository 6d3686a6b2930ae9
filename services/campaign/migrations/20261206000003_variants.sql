-- A/B variants: the abtesting experiment that assigns each recipient's variant and the
-- content of each variant ([{key, subject, body, click_url}]); each delivery records the
-- variant it was sent with ('' = no variants).

ALTER TABLE campaigns
    ADD COLUMN experiment_key text NOT NULL DEFAULT '',
    ADD COLUMN variants       jsonb NOT NULL DEFAULT '[]';

ALTER TABLE campaign_deliveries ADD COLUMN variant text NOT NULL DEFAULT '';
