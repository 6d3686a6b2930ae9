-- The SYSTEM notes that name a user ($1) as actor or target, rewritten with the pseudonym ($2)
-- in place of the name. The service writes them as "<actor> added <user>", "<actor> removed
-- <user>" and "<actor> left" (app.rs), and user ids hold no spaces, so the words are exact.
-- Returns one row per note rewritten.
UPDATE chat_messages
   SET content = concat_ws(' ',
           CASE WHEN split_part(content, ' ', 1) = $1 THEN $2 ELSE split_part(content, ' ', 1) END,
           split_part(content, ' ', 2),
           CASE WHEN split_part(content, ' ', 3) = $1 THEN $2
                ELSE NULLIF(split_part(content, ' ', 3), '') END)
 WHERE kind = 'SYSTEM'
   AND (split_part(content, ' ', 1) = $1 OR split_part(content, ' ', 3) = $1)
RETURNING 1
