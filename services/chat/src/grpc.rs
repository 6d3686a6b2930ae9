//! Chat's gRPC edge: proto ↔ domain and errors → status; the feed of `Subscribe` is pumped
//! into the response stream by a task that holds the caller's presence while it runs.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use titan_kit::{auth, error::to_status, wire::timestamp};
use titan_proto::chat::v1::{self as pb, chat_service_server::ChatService};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    app::{Chat, ChatError, ChatStore},
    domain::{
        Conversation, ConversationKind, InputError, Member, MemberRole, Message, MessageKind,
        Metadata, Receipt, Typing,
    },
    feed::Event,
    store::redis::Presence,
};

pub const DOMAIN: &str = "chat.titan.dev";
/// Events a `Subscribe` stream buffers for a slow reader before the feed waits.
const STREAM_BUFFER: usize = 64;

fn status(e: &ChatError) -> Status {
    to_status(DOMAIN, e)
}

pub struct Grpc<S> {
    app: Arc<Chat<S>>,
    shutdown: CancellationToken,
}

impl<S> std::fmt::Debug for Grpc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S> Grpc<S> {
    pub fn new(app: Arc<Chat<S>>, shutdown: CancellationToken) -> Self {
        Self { app, shutdown }
    }
}

fn kind_of(k: ConversationKind) -> pb::ConversationKind {
    match k {
        ConversationKind::Direct => pb::ConversationKind::Direct,
        ConversationKind::Group => pb::ConversationKind::Group,
        ConversationKind::Support => pb::ConversationKind::Support,
    }
}

fn member(m: &Member) -> pb::Member {
    pb::Member {
        user_id: m.user_id.to_string(),
        role: match m.role {
            MemberRole::Member => pb::MemberRole::Member,
            MemberRole::Admin => pb::MemberRole::Admin,
        } as i32,
        joined_at: Some(timestamp(m.joined_at)),
    }
}

pub fn conversation(c: &Conversation) -> pb::Conversation {
    pb::Conversation {
        id: c.id.to_string(),
        kind: kind_of(c.kind) as i32,
        name: c.name.clone().unwrap_or_default(),
        created_by: c.created_by.to_string(),
        members: c.members.iter().map(member).collect(),
        created_at: Some(timestamp(c.created_at)),
        last_message_id: c
            .last_message_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

fn message_type(k: MessageKind) -> pb::MessageType {
    match k {
        MessageKind::Text => pb::MessageType::Text,
        MessageKind::Image => pb::MessageType::Image,
        MessageKind::File => pb::MessageType::File,
        MessageKind::Product => pb::MessageType::Product,
        MessageKind::Order => pb::MessageType::Order,
        MessageKind::System => pb::MessageType::System,
    }
}

/// The type a client sent; UNSPECIFIED and unknown numbers are refused naming `type`.
fn parse_type(n: i32) -> Result<MessageKind, InputError> {
    match pb::MessageType::try_from(n) {
        Ok(pb::MessageType::Text) => Ok(MessageKind::Text),
        Ok(pb::MessageType::Image) => Ok(MessageKind::Image),
        Ok(pb::MessageType::File) => Ok(MessageKind::File),
        Ok(pb::MessageType::Product) => Ok(MessageKind::Product),
        Ok(pb::MessageType::Order) => Ok(MessageKind::Order),
        Ok(pb::MessageType::System) => Ok(MessageKind::System),
        Ok(pb::MessageType::Unspecified) => Err(InputError::new("type", "is required")),
        Err(_) => Err(InputError::new(
            "type",
            format!("{n} is not a message type"),
        )),
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn metadata_in(m: Option<pb::MessageMetadata>) -> Metadata {
    let m = m.unwrap_or_default();
    Metadata {
        url: opt(m.url),
        file_name: opt(m.file_name),
        file_size: (m.file_size > 0).then_some(m.file_size),
        product_id: opt(m.product_id),
        order_id: opt(m.order_id),
    }
}

pub fn message(m: &Message) -> pb::Message {
    let md = &m.metadata;
    pb::Message {
        id: m.id.to_string(),
        conversation_id: m.conversation_id.to_string(),
        sender_id: m.sender_id.to_string(),
        r#type: message_type(m.kind) as i32,
        content: m.content.clone(),
        metadata: (!md.is_empty()).then(|| pb::MessageMetadata {
            url: md.url.clone().unwrap_or_default(),
            file_name: md.file_name.clone().unwrap_or_default(),
            file_size: md.file_size.unwrap_or_default(),
            product_id: md.product_id.clone().unwrap_or_default(),
            order_id: md.order_id.clone().unwrap_or_default(),
        }),
        sent_at: Some(timestamp(m.sent_at)),
        edited_at: m.edited_at.map(timestamp),
        deleted_at: m.deleted_at.map(timestamp),
        seq: u64::try_from(m.seq).unwrap_or_default(),
    }
}

fn receipt(r: &Receipt) -> pb::Receipt {
    pb::Receipt {
        conversation_id: r.conversation_id.to_string(),
        user_id: r.user_id.to_string(),
        delivered_up_to: r
            .markers
            .delivered_up_to
            .map(|id| id.to_string())
            .unwrap_or_default(),
        read_up_to: r
            .markers
            .read_up_to
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

fn typing(t: &Typing) -> pb::Typing {
    pb::Typing {
        conversation_id: t.conversation_id.to_string(),
        user_id: t.user_id.to_string(),
        typing: t.typing,
    }
}

fn presence(p: &Presence) -> pb::Presence {
    pb::Presence {
        user_id: p.user_id.to_string(),
        online: p.online,
        last_seen: p.last_seen.map(timestamp),
    }
}

fn event(e: &Event) -> pb::SubscribeResponse {
    use pb::subscribe_response::Event as E;
    let event = match e {
        Event::Message(m) => E::Message(message(m)),
        Event::Updated(m) => E::Updated(message(m)),
        Event::Receipt(r) => E::Receipt(receipt(r)),
        Event::Typing(t) => E::Typing(typing(t)),
    };
    pb::SubscribeResponse { event: Some(event) }
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: ChatStore> ChatService for Grpc<S> {
    type SubscribeStream = Events;

    async fn create_direct(
        &self,
        request: Request<pb::CreateDirectRequest>,
    ) -> Result<Response<pb::CreateDirectResponse>, Status> {
        let caller = auth::caller(&request)?;
        let (c, created) = self
            .app
            .create_direct(&caller, &request.get_ref().other_user_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::CreateDirectResponse {
            conversation: Some(conversation(&c)),
            created,
        }))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let c = self
            .app
            .create_group(&caller, &r.request_id, &r.name, &r.member_ids)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::CreateGroupResponse {
            conversation: Some(conversation(&c)),
        }))
    }

    async fn create_support(
        &self,
        request: Request<pb::CreateSupportRequest>,
    ) -> Result<Response<pb::CreateSupportResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let c = self
            .app
            .create_support(&caller, &r.request_id, &r.name)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::CreateSupportResponse {
            conversation: Some(conversation(&c)),
        }))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let c = self
            .app
            .add_member(&caller, &r.conversation_id, &r.user_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AddMemberResponse {
            conversation: Some(conversation(&c)),
        }))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let c = self
            .app
            .remove_member(&caller, &r.conversation_id, &r.user_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::RemoveMemberResponse {
            conversation: Some(conversation(&c)),
        }))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::GetConversationResponse>, Status> {
        let caller = auth::caller(&request)?;
        let c = self
            .app
            .conversation(&caller, &request.get_ref().conversation_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetConversationResponse {
            conversation: Some(conversation(&c)),
        }))
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let page = self
            .app
            .list_conversations(&caller, &r.after, r.limit)
            .await
            .map_err(|e| status(&e))?;
        let limit = if r.limit == 0 {
            crate::app::MAX_CONVERSATION_PAGE
        } else {
            r.limit
        };
        let next_after = if page.len() == limit as usize {
            page.last()
                .map(|(c, _)| c.id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListConversationsResponse {
            conversations: page
                .iter()
                .map(|(c, unread)| pb::ConversationSummary {
                    conversation: Some(conversation(c)),
                    unread: *unread,
                })
                .collect(),
            next_after,
        }))
    }

    async fn get_unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> Result<Response<pb::GetUnreadCountsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let counts = self
            .app
            .unread_counts(&caller)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetUnreadCountsResponse {
            counts: counts
                .into_iter()
                .map(|(id, unread)| pb::UnreadCount {
                    conversation_id: id.to_string(),
                    unread,
                })
                .collect(),
        }))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let kind = parse_type(r.r#type).map_err(|e| status(&e.into()))?;
        let m = self
            .app
            .send(
                &caller,
                &r.request_id,
                &r.conversation_id,
                kind,
                &r.content,
                metadata_in(r.metadata),
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::SendMessageResponse {
            message: Some(message(&m)),
        }))
    }

    async fn edit_message(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::EditMessageResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let m = self
            .app
            .edit(&caller, &r.conversation_id, &r.message_id, &r.content)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::EditMessageResponse {
            message: Some(message(&m)),
        }))
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::DeleteMessageResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let m = self
            .app
            .delete(&caller, &r.conversation_id, &r.message_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::DeleteMessageResponse {
            message: Some(message(&m)),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let page = self
            .app
            .history(&caller, &r.conversation_id, &r.before, &r.after, r.limit)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: page.iter().map(message).collect(),
        }))
    }

    async fn mark_receipt(
        &self,
        request: Request<pb::MarkReceiptRequest>,
    ) -> Result<Response<pb::MarkReceiptResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let marked = self
            .app
            .mark(
                &caller,
                &r.conversation_id,
                &r.delivered_up_to,
                &r.read_up_to,
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::MarkReceiptResponse {
            receipt: Some(receipt(&marked)),
        }))
    }

    async fn get_receipts(
        &self,
        request: Request<pb::GetReceiptsRequest>,
    ) -> Result<Response<pb::GetReceiptsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let all = self
            .app
            .receipts(&caller, &request.get_ref().conversation_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetReceiptsResponse {
            receipts: all.iter().map(receipt).collect(),
        }))
    }

    async fn set_typing(
        &self,
        request: Request<pb::SetTypingRequest>,
    ) -> Result<Response<pb::SetTypingResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        self.app
            .set_typing(&caller, &r.conversation_id, r.typing)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::SetTypingResponse {}))
    }

    async fn get_typing(
        &self,
        request: Request<pb::GetTypingRequest>,
    ) -> Result<Response<pb::GetTypingResponse>, Status> {
        let caller = auth::caller(&request)?;
        let users = self
            .app
            .typing(&caller, &request.get_ref().conversation_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetTypingResponse {
            user_ids: users.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        auth::caller(&request)?;
        let all = self
            .app
            .presence(&request.get_ref().user_ids)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetPresenceResponse {
            presences: all.iter().map(presence).collect(),
        }))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let mut feed = self
            .app
            .feed(&caller, &r.conversation_id, &r.after)
            .await
            .map_err(|e| status(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let online = self.app.online(&caller.user_id);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _online = online;
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    next = feed.next() => next,
                };
                let item = next.map(|e| event(&e)).map_err(|e| status(&e));
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
