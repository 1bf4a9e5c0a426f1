# Least-privilege policies for the runner hosts, where the hook runs with the runner's AWS
# credentials. Every statement that changes something is bound to the hook's tags or to
# named resources; only reads (Describe*) are on "*", as EC2 and Auto Scaling require.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  partition = data.aws_partition.current.partition
  account   = var.account_id != null ? var.account_id : data.aws_caller_identity.current.account_id
  ec2_arn   = "arn:${local.partition}:ec2:${var.region}:${local.account}"

  owner_tag      = "remote-container-hooks:owner"
  host_key_tag   = "remote-container-hooks:host-key"
  reap_candidate = "remote-container-hooks:reap-candidate"
  keep_tag       = "remote-container-hooks:keep"
  pool_tag_keys = [
    "remote-container-hooks:jobs",
    "remote-container-hooks:recycle",
    "remote-container-hooks:reservation",
    local.reap_candidate,
  ]

  # ---------------------------------------------------------------- fleet (both kinds)
  # The fleet ledger's table, when it is in DynamoDB: TransactWriteItems is authorised per item it
  # writes (Put: PutItem, Update: UpdateItem); DescribeTable is doctor's; Query only on its two
  # indexes (open reservations: reap; a time range: report). Nothing else, this table only.
  ledger_statements = length(var.ledger_table_arns) > 0 ? [
    {
      Sid      = "FleetLedger"
      Effect   = "Allow"
      Action   = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"]
      Resource = var.ledger_table_arns
    },
    {
      Sid      = "FleetLedgerOpenReservations"
      Effect   = "Allow"
      Action   = ["dynamodb:Query"]
      Resource = flatten([for arn in var.ledger_table_arns : ["${arn}/index/open-index", "${arn}/index/time-index"]])
    },
  ] : []
  # The keep tag is the operator's word that reap leaves an instance alone: these credentials never set or remove it.
  never_keep = {
    Sid       = "NeverWriteTheKeepTag"
    Effect    = "Deny"
    Action    = ["ec2:CreateTags", "ec2:DeleteTags"]
    Resource  = "*"
    Condition = { "ForAnyValue:StringEquals" = { "aws:TagKeys" = [local.keep_tag] } }
  }

  # Encrypted volumes under a customer-managed key: EC2 uses the key on the caller's behalf (a
  # grant for the volume), never the caller directly.
  # (A for expression, not a conditional: the two statements differ in shape, which a conditional
  # between them and an empty list cannot unify.)
  kms_statements = [for st in [
    {
      Sid       = "UseVolumeKeysThroughEc2"
      Effect    = "Allow"
      Action    = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"]
      Resource  = var.kms_key_arns
      Condition = { StringEquals = { "kms:ViaService" = "ec2.${var.region}.amazonaws.com" } }
    },
    {
      # kms:GrantIsForAWSResource exists on the grant calls only: on the others it is absent, and
      # the condition would never hold.
      Sid      = "GrantVolumeKeysToEc2"
      Effect   = "Allow"
      Action   = "kms:CreateGrant"
      Resource = var.kms_key_arns
      Condition = {
        StringEquals = { "kms:ViaService" = "ec2.${var.region}.amazonaws.com" }
        Bool         = { "kms:GrantIsForAWSResource" = "true" }
      }
    },
  ] : st if length(var.kms_key_arns) > 0]

  # ---------------------------------------------------------------- kind: ec2
  # This deployment's tag pairs (scope_tags): set by every launch, required of every instance these
  # credentials end or mark. A condition block only when there are pairs: IAM refuses an empty one.
  scope_request  = { for k, v in var.scope_tags : "aws:RequestTag/${k}" => v }
  scope_resource = { for k, v in var.scope_tags : "aws:ResourceTag/${k}" => v }
  scoped_request = { for op, m in { StringEquals = local.scope_request } : op => m if length(m) > 0 }
  scoped_owned   = { for op, m in { StringEquals = local.scope_resource } : op => m if length(m) > 0 }

  launch_from = concat(
    [for id in var.image_ids : "arn:${local.partition}:ec2:${var.region}::image/${id}"],
    [for id in var.subnet_ids : "${local.ec2_arn}:subnet/${id}"],
    [for id in var.security_group_ids : "${local.ec2_arn}:security-group/${id}"],
    [for id in var.launch_template_ids : "${local.ec2_arn}:launch-template/${id}"],
  )
  # What a launch creates, each tagged by the launch itself (a spot launch's Spot request too).
  launched = concat(
    [
      "${local.ec2_arn}:instance/*",
      "${local.ec2_arn}:volume/*",
      "${local.ec2_arn}:network-interface/*",
    ],
    var.allow_spot ? ["${local.ec2_arn}:spot-instances-request/*"] : [],
  )

  ec2_policy = {
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "LaunchFromNamedResources"
          Effect   = "Allow"
          Action   = "ec2:RunInstances"
          Resource = local.launch_from
        },
        {
          Sid       = "LaunchOnlyOwnedInstances"
          Effect    = "Allow"
          Action    = "ec2:RunInstances"
          Resource  = local.launched
          Condition = merge({ Null = { "aws:RequestTag/${local.owner_tag}" = "false" } }, local.scoped_request)
        },
        {
          # Without ec2:CreateAction these credentials could tag any instance and then end it.
          Sid      = "TagOnlyAtLaunch"
          Effect   = "Allow"
          Action   = "ec2:CreateTags"
          Resource = local.launched
          Condition = {
            StringEquals = merge({ "ec2:CreateAction" = "RunInstances" }, local.scope_request)
            Null         = { "aws:RequestTag/${local.owner_tag}" = "false" }
          }
        },
        {
          # DescribeSubnets and DescribeSecurityGroups are doctor's (the subnets and groups the config names).
          Sid    = "Read"
          Effect = "Allow"
          Action = [
            "ec2:DescribeInstances",
            "ec2:DescribeImages",
            "ec2:DescribeLaunchTemplateVersions",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
          ]
          Resource = "*"
        },
        {
          # reap's first pass marks an owned instance, and unmarks it when its job shows life again.
          Sid      = "MarkReapCandidates"
          Effect   = "Allow"
          Action   = ["ec2:CreateTags", "ec2:DeleteTags"]
          Resource = "${local.ec2_arn}:instance/*"
          Condition = merge({
            Null                        = { "aws:ResourceTag/${local.owner_tag}" = "false", "aws:TagKeys" = "false" }
            "ForAllValues:StringEquals" = { "aws:TagKeys" = [local.reap_candidate] }
          }, local.scoped_owned)
        },
        local.never_keep,
        {
          Sid       = "TerminateOnlyOwnedInstances"
          Effect    = "Allow"
          Action    = "ec2:TerminateInstances"
          Resource  = "${local.ec2_arn}:instance/*"
          Condition = merge({ Null = { "aws:ResourceTag/${local.owner_tag}" = "false" } }, local.scoped_owned)
        },
        {
          # The operator's keep tag: nothing these credentials run ends such an instance (the hook
          # and reap leave it alone; this holds should either ever not).
          Sid       = "NeverEndAKeptInstance"
          Effect    = "Deny"
          Action    = "ec2:TerminateInstances"
          Resource  = "*"
          Condition = { Null = { "aws:ResourceTag/${local.keep_tag}" = "false" } }
        },
      ],
      length(var.instance_types) > 0 ? [
        {
          Sid       = "LaunchOnlyTheseTypes"
          Effect    = "Deny"
          Action    = "ec2:RunInstances"
          Resource  = "${local.ec2_arn}:instance/*"
          Condition = { StringNotEquals = { "ec2:InstanceType" = var.instance_types } }
        },
      ] : [],
      var.require_imdsv2 ? [
        {
          # A job is root on its instance: with IMDSv1 or a longer hop limit its containers reach
          # the instance profile's credentials. Evaluated on the launch as the template completes it.
          Sid       = "LaunchOnlyWithImdsV2"
          Effect    = "Deny"
          Action    = "ec2:RunInstances"
          Resource  = "${local.ec2_arn}:instance/*"
          Condition = { StringNotEquals = { "ec2:MetadataHttpTokens" = "required" } }
        },
        {
          Sid       = "LaunchOnlyWithHopLimitOne"
          Effect    = "Deny"
          Action    = "ec2:RunInstances"
          Resource  = "${local.ec2_arn}:instance/*"
          Condition = { NumericGreaterThan = { "ec2:MetadataHttpPutResponseHopLimit" = "1" } }
        },
        {
          # A hop limit left unstated is the AMI's or the account's default, which can be 2: it must be stated.
          Sid       = "LaunchOnlyWithAStatedHopLimit"
          Effect    = "Deny"
          Action    = "ec2:RunInstances"
          Resource  = "${local.ec2_arn}:instance/*"
          Condition = { Null = { "ec2:MetadataHttpPutResponseHopLimit" = "true" } }
        },
      ] : [],
      [
        {
          # The hook and the ephemeral module's template encrypt the root volume; a volume marked
          # unencrypted (an AMI's extra mapping of an unencrypted snapshot, say) is refused.
          Sid       = "LaunchOnlyEncryptedVolumes"
          Effect    = "Deny"
          Action    = "ec2:RunInstances"
          Resource  = "${local.ec2_arn}:volume/*"
          Condition = { Bool = { "ec2:Encrypted" = "false" } }
        },
      ],
      local.kms_statements,
      length(var.instance_role_arns) > 0 ? [
        {
          Sid       = "PassInstanceRoleToEc2"
          Effect    = "Allow"
          Action    = "iam:PassRole"
          Resource  = var.instance_role_arns
          Condition = { StringEquals = { "iam:PassedToService" = "ec2.amazonaws.com" } }
        },
      ] : [],
      local.ledger_statements,
    )
  }

  # ---------------------------------------------------------------- kind: ec2-pool
  pool_policy = {
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid    = "Read"
        Effect = "Allow"
        Action = [
          "ec2:DescribeInstances",
          "ec2:DescribeLaunchTemplateVersions",
          "ec2:DescribeInstanceTypes",
          "autoscaling:DescribeAutoScalingGroups",
          "autoscaling:DescribeAutoScalingInstances",
        ]
        Resource = "*"
      },
      {
        # SetInstanceProtection: a member is protected from scale-in while a job holds it.
        Sid    = "ScaleOutRecycleAndResume"
        Effect = "Allow"
        Action = [
          "autoscaling:SetDesiredCapacity",
          "autoscaling:TerminateInstanceInAutoScalingGroup",
          "autoscaling:ExitStandby",
          "autoscaling:SetInstanceProtection",
        ]
        Resource = var.autoscaling_group_arns
      },
      {
        Sid       = "StartStoppedMembers"
        Effect    = "Allow"
        Action    = "ec2:StartInstances"
        Resource  = "${local.ec2_arn}:instance/*"
        Condition = { StringEquals = { "aws:ResourceTag/aws:autoscaling:groupName" = var.autoscaling_group_names } }
      },
      {
        Sid      = "TagMembersJobsAndRecycle"
        Effect   = "Allow"
        Action   = "ec2:CreateTags"
        Resource = "${local.ec2_arn}:instance/*"
        Condition = {
          StringEquals                = { "aws:ResourceTag/aws:autoscaling:groupName" = var.autoscaling_group_names }
          "ForAllValues:StringEquals" = { "aws:TagKeys" = local.pool_tag_keys }
          Null                        = { "aws:TagKeys" = "false" }
        }
      },
      {
        # reap unmarks a member that is no longer a candidate: that one tag key, named.
        Sid      = "UnmarkReapCandidates"
        Effect   = "Allow"
        Action   = "ec2:DeleteTags"
        Resource = "${local.ec2_arn}:instance/*"
        Condition = {
          StringEquals                = { "aws:ResourceTag/aws:autoscaling:groupName" = var.autoscaling_group_names }
          "ForAllValues:StringEquals" = { "aws:TagKeys" = [local.reap_candidate] }
          Null                        = { "aws:TagKeys" = "false" }
        }
      },
      {
        # The member publishes its host key itself; whoever else could write it could redirect
        # the hook to a machine of their choosing. Explicit, so no other policy can grant it.
        Sid       = "NeverWriteTheHostKey"
        Effect    = "Deny"
        Action    = ["ec2:CreateTags", "ec2:DeleteTags"]
        Resource  = "*"
        Condition = { "ForAnyValue:StringEquals" = { "aws:TagKeys" = [local.host_key_tag] } }
      },
      {
        # DeleteTags without tag keys removes every tag: never on a member.
        Sid       = "NeverUntagAMember"
        Effect    = "Deny"
        Action    = "ec2:DeleteTags"
        Resource  = "*"
        Condition = { Null = { "aws:ResourceTag/${local.host_key_tag}" = "false", "aws:TagKeys" = "true" } }
      },
      {
        # ... and of a member's tags, only reap's candidate mark may go.
        Sid      = "UntagOnlyTheReapMark"
        Effect   = "Deny"
        Action   = "ec2:DeleteTags"
        Resource = "*"
        Condition = {
          Null                          = { "aws:ResourceTag/${local.host_key_tag}" = "false" }
          "ForAnyValue:StringNotEquals" = { "aws:TagKeys" = [local.reap_candidate] }
        }
      },
      local.never_keep,
    ], local.kms_statements, local.ledger_statements)
  }

  # ---------------------------------------------------------------- the ledger alone
  # For runner hosts of kind static (their job records, reap's reservations) and machines that only
  # run report: the fleet ledger's statements, without any EC2 or Auto Scaling access.
  ledger_policy = {
    Version   = "2012-10-17"
    Statement = local.ledger_statements
  }
}

resource "aws_iam_policy" "ec2" {
  count       = var.create_ec2_policy ? 1 : 0
  name_prefix = "${var.name_prefix}-ec2-"
  description = "remote-container-hooks kind: ec2 on the runner hosts: launch owner-tagged instances, end only those."
  policy      = jsonencode(local.ec2_policy)
  tags        = var.tags

  lifecycle {
    precondition {
      condition     = length(var.image_ids) > 0 && length(var.subnet_ids) > 0 && length(var.security_group_ids) > 0
      error_message = "The kind: ec2 policy needs image_ids, subnet_ids and security_group_ids (RunInstances is only allowed from named resources)."
    }
  }
}

resource "aws_iam_policy" "pool" {
  count       = var.create_pool_policy ? 1 : 0
  name_prefix = "${var.name_prefix}-pool-"
  description = "remote-container-hooks kind: ec2-pool on the runner hosts: lease, scale out and recycle pool members; never write their host key."
  policy      = jsonencode(local.pool_policy)
  tags        = var.tags

  lifecycle {
    precondition {
      condition     = length(var.autoscaling_group_names) > 0 && length(var.autoscaling_group_names) == length(var.autoscaling_group_arns)
      error_message = "The kind: ec2-pool policy needs autoscaling_group_names and the matching autoscaling_group_arns."
    }
  }
}

resource "aws_iam_role_policy_attachment" "ec2" {
  for_each   = var.create_ec2_policy ? toset(var.attach_to_role_names) : toset([])
  role       = each.value
  policy_arn = aws_iam_policy.ec2[0].arn
}

resource "aws_iam_role_policy_attachment" "pool" {
  for_each   = var.create_pool_policy ? toset(var.attach_to_role_names) : toset([])
  role       = each.value
  policy_arn = aws_iam_policy.pool[0].arn
}
