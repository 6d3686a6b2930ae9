-- Unread counts of every conversation of a user ($1), or of some ($2, NULL = all), in one
-- query: the messages after the user's read marker, not their own, not deleted. Each count is
-- a range scan of chat_messages_pkey (conversation_id, id > marker).
SELECT m.conversation_id,
       (SELECT count(*)
          FROM chat_messages x
         WHERE x.conversation_id = m.conversation_id
           AND x.id > COALESCE(r.read_up_to, '00000000-0000-0000-0000-000000000000'::uuid)
           AND x.sender_id <> m.user_id
           AND x.deleted_at IS NULL) AS unread
  FROM chat_members m
  LEFT JOIN chat_receipts r
    ON r.conversation_id = m.conversation_id AND r.user_id = m.user_id
 WHERE m.user_id = $1
   AND ($2::uuid[] IS NULL OR m.conversation_id = ANY ($2))
 ORDER BY m.conversation_id
