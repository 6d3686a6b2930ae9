-- Carrier names as shipping's config allows them: 1-63 of a-z, 0-9, '-' and '.'
-- (dhl-express.asia); the first migration allowed only 32 without dots, so such a carrier's
-- shipments could not be tracked.
ALTER TABLE tracking_records DROP CONSTRAINT tracking_records_carrier_check;
ALTER TABLE tracking_records ADD CONSTRAINT tracking_records_carrier_check
    CHECK (carrier ~ '^[a-z0-9.-]{1,63}$');
