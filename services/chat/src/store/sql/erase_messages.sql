-- Every message a user ($1) sent, kept in its place (seq and id, so the other participants'
-- history keeps its shape and its unread counts) as a deleted message of the pseudonym ($2):
-- the body and its metadata (URLs, file names) blanked, as a deletion by the sender leaves it.
-- Returns, per message, whether it still had a body (not deleted before).
WITH mine AS (
    SELECT conversation_id, id, deleted_at IS NULL AND kind <> 'SYSTEM' AS had_body
      FROM chat_messages
     WHERE sender_id = $1
       FOR UPDATE
)
UPDATE chat_messages m
   SET sender_id = $2,
       content = CASE WHEN m.kind = 'SYSTEM' THEN m.content ELSE '' END,
       metadata = CASE WHEN m.kind = 'SYSTEM' THEN m.metadata ELSE '{}' END,
       deleted_at = CASE WHEN m.kind = 'SYSTEM' THEN m.deleted_at ELSE COALESCE(m.deleted_at, now()) END
  FROM mine
 WHERE m.conversation_id = mine.conversation_id AND m.id = mine.id
RETURNING mine.had_body
