-- Erasure (docs/tracking.md#privacy) blanks what an event holds about a person while the
-- event stays: its coordinates (a driver's position, at the recipient's door on delivery)
-- and a carrier's free-text note. Only that, and only in a transaction that set
-- tracking.erasure = 'on' (SET LOCAL, as the erasure does): every other change, any delete
-- and any truncate are still refused.
CREATE OR REPLACE FUNCTION tracking_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('tracking.erasure', true) = 'on' THEN
        IF NEW.lat IS NULL AND NEW.lng IS NULL AND (NEW.note = OLD.note OR NEW.note = '')
           AND (NEW.id, NEW.record_id, NEW.kind, NEW.location, NEW.at, NEW.source,
                NEW.source_event_id, NEW.estimated_delivery, NEW.recorded_at)
               IS NOT DISTINCT FROM
               (OLD.id, OLD.record_id, OLD.kind, OLD.location, OLD.at, OLD.source,
                OLD.source_event_id, OLD.estimated_delivery, OLD.recorded_at) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'tracking events are appended, never changed or deleted';
END
$$;
